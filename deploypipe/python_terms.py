"""Refusals said in the caller's terms: the pipeline's sentences name command-line options
(``pass --dataset``, ``ask for at least --latency-ratio 0.34``); called from Python, the same
sentence names the keyword the caller would change (``train_loader=``, ``budget='latency:0.34'``).

:func:`speaks_python` wraps :func:`deploypipe.build` and :func:`deploypipe.prune`. A flag with
no keyword in the called function is left as written (it still names the setting).
"""
from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable, Iterable

from .errors import DeploypipeError

_BUDGET_FLAGS = {"latency-ratio": "latency", "latency-budget": "latency", "macs-budget": "macs",
                 "params-budget": "params", "ratio": "ratio"}
_VALUE = r"(?: (\d[\w]*(?:\.\w+)*))?"  # a budget's value, when the sentence gives one
_SWITCHES = {"trust_model", "distill", "amp", "progress"}  # flags without a value: keyword=True
_WORDS = {"a", "also", "and", "as", "at", "be", "but", "by", "first", "for", "from", "if", "in", "instead", "is",
          "it", "not", "of", "on", "only", "or", "out", "so", "than", "that", "the", "this", "to", "too", "when",
          "with"}
_QUOTED = re.compile(r"('[^']*')")  # the user's own text (a path, a spec): never rewritten


def in_python_terms(text: str, keywords: Iterable[str]) -> str:
    """``text`` with each ``--flag`` that has a keyword among ``keywords`` written as that keyword
    (outside quoted text, which is the caller's own)."""
    keywords = set(keywords)
    return "".join(part if _QUOTED.fullmatch(part) else _rewrite(part, keywords) for part in _QUOTED.split(text))


def _rewrite(text: str, keywords: set[str]) -> str:
    data = "train_loader= (or dataset=)" if "dataset" in keywords else "train_loader="
    text = re.sub(r"--dataset(?: NAME)?(?:,? e\.g\. --dataset \w+)?(?: \(see `deploypipe list datasets`\))?(?![ \w]*:)",
                  data, text)
    text = re.sub(r"--input-size and --in-channels|--input-shape|--input-size", "example_inputs=", text)
    if "budget" in keywords:
        def budget(m: re.Match) -> str:
            kind, value = _BUDGET_FLAGS[m.group(1)], m.group(2)
            return f"budget='{kind}:{value}'" if value else f"budget='{kind}:...'"
        text = re.sub(r"--(latency-ratio|latency-budget|macs-budget|params-budget|ratio)\b" + _VALUE, budget, text)

    def keyword(m: re.Match) -> str:
        name, value = m.group(1).replace("-", "_"), m.group(2)
        if name not in keywords:
            return m.group(0)
        if name in _SWITCHES:
            return f"{name}=True" + (f" {value}" if value else "")
        if value and value.lower() not in _WORDS:
            return f"{name}={value}" if re.fullmatch(r"[\d.]+", value) else f"{name}={value!r}"
        return f"{name}=" + (f" {value}" if value else "")

    # a value follows a space, or directly after `py:`-style flags (--dataset py:mydata.py:load)
    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)(?: ([\w:-]+(?:\.[\w:-]+)*))?", keyword, text)


def speaks_python(extra: Callable[[], Iterable[str]] = tuple) -> Callable:
    """Decorate an API function: a :class:`DeploypipeError` it raises leaves it said with the
    function's keywords (and ``extra()``, keywords it forwards, asked only on a refusal so that
    importing the API stays light) instead of command-line flags."""
    def wrap(fn: Callable) -> Callable:
        own = set(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except DeploypipeError as error:
                keywords = own | set(extra())
                error.message = in_python_terms(error.message, keywords)
                error.hint = in_python_terms(error.hint, keywords) if error.hint else error.hint
                error.args = (error.sentence(),)
                raise
        return call
    return wrap


__all__ = ["in_python_terms", "speaks_python"]
