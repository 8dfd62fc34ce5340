"""Continual-learning methods by name, through the one plug-in registry; each lives in one small file here."""

from __future__ import annotations

from ...plugins import Registry
from .base import Method

METHODS = Registry(
    "method",
    {
        "sft": "safeeval.train.methods.sft:SFT",
        "er": "safeeval.train.methods.er:ER",
        "der": "safeeval.train.methods.der:DER",
        "derpp": "safeeval.train.methods.derpp:DERpp",
        "agem": "safeeval.train.methods.agem:AGEM",
        "l2": "safeeval.train.methods.l2:L2",
        "ewc": "safeeval.train.methods.ewc:EWC",
        "lwf": "safeeval.train.methods.lwf:LwF",
        "linear": "safeeval.train.methods.linear:Linear",
        "task-arithmetic": "safeeval.train.methods.task_arithmetic:TaskArithmetic",
        "ties": "safeeval.train.methods.ties:Ties",
        "dare": "safeeval.train.methods.dare:Dare",
        "magmax": "safeeval.train.methods.magmax:MagMax",
        "grsap": "safeeval.train.methods.grsap:GRSAP",
        "safelora": "safeeval.train.methods.safelora:SafeLoRA",
        "lisa": "safeeval.train.methods.lisa:Lisa",
    },
)


def make_method(name: str, options: dict | None = None) -> Method:
    return METHODS.get(name)(**(options or {}))
