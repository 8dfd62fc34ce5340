"""GR-SAP: generative replay for safety alignment preservation (Fang, Zhou, Chen 2026, arXiv 2603.10243)."""

from ...errors import SafeevalError
from .. import synthesis
from .base import Method, check_range


class GRSAP(Method):
    name = "grsap"
    help = (
        "Generative replay: the aligned model states requests it would refuse in each harm domain and answers "
        "them; the answers the judge calls safe fill a share `ratio` of the budget (see train/synthesis.py)."
    )
    options = {
        "ratio": 0.1,
        "per_domain": 16,
        "temperature": 1.0,
        "response_temperature": 0.8,
        "top_p": 0.95,
        "max_query_tokens": 96,
        "max_response_tokens": 256,
        "judge": "keyword",
        "dedup": 0.85,
        "elicitation": "",
        "domains": ",".join(synthesis.DOMAINS),
    }
    uses_safety = True
    parameter_sharding = True  # data mixing only

    def check(self):
        check_range(self.name, "ratio", self.opt.ratio, 0.0, 1.0)
        for name in ("per_domain", "max_query_tokens", "max_response_tokens"):
            check_range(self.name, name, getattr(self.opt, name), 1)
        check_range(self.name, "response_temperature", self.opt.response_temperature, 0.0)
        check_range(self.name, "top_p", self.opt.top_p, 0.0, 1.0)
        check_range(self.name, "dedup", self.opt.dedup, 0.0, 1.0)
        if self.opt.temperature <= 0:
            raise SafeevalError(
                "Method 'grsap': option temperature must be above 0, or every sample of a domain "
                f"elicits the same request; got {self.opt.temperature}."
            )
        if self.opt.top_p <= 0:
            raise SafeevalError(f"Method 'grsap': option top_p must lie in (0, 1]; got {self.opt.top_p}.")
        synthesis.load_template(self.opt.elicitation)  # a bad file or judge fails before any model is loaded
        synthesis.domain_list(self.opt.domains)
        synthesis.find_judge(self.opt.judge)

    @property
    def safety_ratio(self) -> float:
        return self.opt.ratio

    def safety_rows(self, ctx):
        return synthesis.synthesize(ctx, self.opt)
