from .cli import app

if __name__ == "__main__":  # vLLM starts workers with spawn, which re-imports this module
    app()
