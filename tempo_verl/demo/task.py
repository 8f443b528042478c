"""The demo's tasks: what a prompt is, what a well-formed response is, and the exact checker.

Both tasks share one shape (:class:`ItemTask`): a prompt holds ``K`` digits; a response is a
deterministic lead-in, then one *item* per digit, items joined by a free separator word (``,`` or
``and``), then ``<eos>``. Each item holds exactly one *decision token* (its label); every other
token is low-stakes format that the supervised warm-up teaches (:meth:`ItemTask.format_example`
draws the labels by coin flip, so the warmed-up policy knows the format but guesses every label:
success ``2**-K`` at the start, and only reinforcement learning can teach the labels). The reward
is 1 only when the format is exact and *every* label is right, so a failed response usually holds
right labels too: the credit-assignment problem a sequence-level advantage (GRPO) gets wrong.

* :class:`ParityTask` (``parity``, the demo's task): label each digit ``odd``/``even``. The right
  label is a fixed map digit -> label, the same in every context::

      prompt:   parity 3 8 5 :
      response: 3 odd , 8 even and 5 odd <eos>                              -> 1.0

* :class:`RuleTask` (``rule``, the study's premise task, chosen 2026-11-25, see docs/demo.md
  "Study protocol"): answer ``yes``/``no`` for each digit: does its parity match the rule word of
  the prompt (``odd`` or ``even``)? The same digit needs ``yes`` under one rule and ``no`` under
  the other, so the right value of a decision depends on context, not on the token before it. A
  response restates the rule first (a prefix every response of a group shares before its first
  decision), its separators are fixed (the decisions are its only free tokens), and it is four
  times longer than its ``K = 3`` decisions::

      prompt:   find odd : 3 8 5 :
      response: mark odd : 3 yes , 8 no , 5 yes <eos>                       -> 1.0

* :class:`ChainTask` (``chain``, piloted 2026-12-07 as the study's second premise task, see
  docs/study-protocol.md): label the parity of the *running sum* after each digit, as in
  multi-step arithmetic. Each decision's right value depends on the one before it (the sum so far),
  so once a label is wrong, a policy that carries its own previous label forward gets every later
  one wrong too; ``K = 4`` decisions per response (``rule`` has 3), the separators fixed. The
  GRPO-only pilot did not learn it within the study's budget, so the study does not run it::

      prompt:   chain 3 8 5 6 :
      response: sum : 3 odd , 8 odd , 5 even , 6 even <eos>                 -> 1.0

Tasks are looked up by name with :func:`make_task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

__all__ = [
    "EOS",
    "PAD",
    "SEPARATORS",
    "TASKS",
    "UNK",
    "ChainTask",
    "ItemTask",
    "ParityTask",
    "RuleTask",
    "make_task",
]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SEPARATORS = (",", "and")  # the free, low-stakes word between two items
DIGITS = tuple(str(d) for d in range(10))

Problem = tuple[int, ...]  # what one prompt asks; the tasks below say what the ints mean


@dataclass(frozen=True)
class ItemTask:
    """The shared shape of the demo's tasks (see the module docstring). Subclasses define the prompt,
    the lead-in, one item's words and the right label; format, warm-up data and checker live here.

    Attributes:
        num_digits: ``K``, the number of digits per prompt (= decision tokens per response).
    """

    num_digits: int = 3
    name: ClassVar[str] = "item"
    labels: ClassVar[tuple[str, str]] = ("no", "yes")
    keywords: ClassVar[tuple[str, ...]] = ()  # the task's own words besides labels, separators and digits
    separators: ClassVar[tuple[str, ...]] = SEPARATORS  # the words allowed between two items

    # ----- defined by each task ----------------------------------------------------------------
    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Problem]:
        """``n`` problems drawn with ``generator``."""
        raise NotImplementedError

    def prompt_text(self, problem: Problem) -> str:
        """The prompt's words."""
        raise NotImplementedError

    def digits(self, problem: Problem) -> tuple[int, ...]:
        """The ``K`` digits the response labels, in order."""
        raise NotImplementedError

    def lead_in(self, problem: Problem) -> list[str]:
        """The words a response starts with, before its first item (deterministic)."""
        raise NotImplementedError

    def item_words(self, problem: Problem, digit: int, label: str) -> list[str]:
        """One item's words, holding ``label`` once."""
        raise NotImplementedError

    def right_label(self, problem: Problem, digit: int) -> str:
        """The label the checker accepts for ``digit`` in ``problem``."""
        raise NotImplementedError

    def right_labels(self, problem: Problem) -> list[str]:
        """The ``K`` labels the checker accepts, in order (each digit's :meth:`right_label`, unless a
        task's labels depend on the items before them)."""
        return [self.right_label(problem, d) for d in self.digits(problem)]

    # ----- shared --------------------------------------------------------------------------------
    @property
    def words(self) -> list[str]:
        """Every word of the task, special tokens first (``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2)."""
        return [PAD, EOS, UNK, *self.keywords, *self.separators, *self.labels, *DIGITS]

    @cached_property
    def max_response_words(self) -> int:
        """Words in a well-formed response, ``<eos>`` excluded (the same for every problem; computed once)."""
        problem = self.sample_prompts(1, torch.Generator().manual_seed(0))[0]
        return len(self._expected(problem, [self.labels[0]] * self.num_digits, [self.separators[0]] * self.num_digits))

    def _expected(self, problem: Problem, labels: list[str], separators: list[str]) -> list[str]:
        """The response's words for the given labels and separators (``separators[i]`` precedes item ``i``)."""
        words = list(self.lead_in(problem))
        for i, (d, lab) in enumerate(zip(self.digits(problem), labels, strict=True)):
            if i:
                words.append(separators[i])
            words += self.item_words(problem, d, lab)
        return words

    def response_text(self, problem: Problem, labels: tuple[str, ...], separators: tuple[str, ...]) -> str:
        """A well-formed response with the given labels and the ``K - 1`` separators between items."""
        return " ".join(self._expected(problem, list(labels), ["", *separators]))

    def format_example(self, problem: Problem, generator: torch.Generator) -> str:
        """A warm-up response: the right format, separators *and labels* drawn uniformly at random.

        The labels are coin flips on purpose: the warm-up teaches the format only, never the answer.
        """
        coins = torch.randint(0, 2, (2, self.num_digits), generator=generator).tolist()
        separators = tuple(self.separators[c % len(self.separators)] for c in coins[0][1:])
        labels = tuple(self.labels[c] for c in coins[1])
        return self.response_text(problem, labels, separators)

    def score(self, problem: Problem, response: str) -> float:
        """The verifiable reward of one response (special tokens already stripped).

        Returns 1.0 exactly when the response is the lead-in followed by the ``K`` items in order,
        each with its right label, joined by words from :attr:`separators`; anything else (a
        wrong label, a wrong echoed word, a missing or unknown separator, extra words) scores 0.0.
        """
        words = response.split()
        digits = self.digits(problem)
        if len(words) != self.max_response_words or len(digits) != self.num_digits:
            return 0.0
        right = self.right_labels(problem)
        separators = [words[i] for i in self._separator_positions(problem)]
        if not all(s in self.separators for s in separators):
            return 0.0
        return float(words == self._expected(problem, right, ["", *separators]))

    def _separator_positions(self, problem: Problem) -> list[int]:
        """Word positions of the ``K - 1`` separators in a well-formed response."""
        item = len(self.item_words(problem, 0, self.labels[0]))
        start = len(self.lead_in(problem)) + item
        return [start + i * (item + 1) for i in range(self.num_digits - 1)]


@dataclass(frozen=True)
class ParityTask(ItemTask):
    """Label each of ``K`` digits ``odd``/``even`` (problem = the digits): ``3 odd , 8 even and 5 odd``."""

    name: ClassVar[str] = "parity"
    labels: ClassVar[tuple[str, str]] = ("even", "odd")  # labels[d % 2] is the right label of digit d
    keywords: ClassVar[tuple[str, ...]] = ("parity", ":")

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Problem]:
        """``n`` prompts, each ``K`` digits drawn uniformly from 0..9 (with replacement)."""
        draws = torch.randint(0, 10, (n, self.num_digits), generator=generator)
        return [tuple(int(d) for d in row) for row in draws]

    def prompt_text(self, problem: Problem) -> str:
        """``parity 3 8 5 :``."""
        return " ".join(["parity", *map(str, problem), ":"])

    def digits(self, problem: Problem) -> tuple[int, ...]:
        return problem

    def lead_in(self, problem: Problem) -> list[str]:
        return []

    def item_words(self, problem: Problem, digit: int, label: str) -> list[str]:
        return [str(digit), label]

    def right_label(self, problem: Problem, digit: int) -> str:
        return self.labels[digit % 2]


@dataclass(frozen=True)
class RuleTask(ItemTask):
    """Answer ``yes``/``no`` for each of ``K`` digits: does its parity match the prompt's rule word?

    Problem = ``(r, d_1, ..., d_K)`` with ``r`` = 1 for the rule ``odd`` and 0 for ``even``, each
    uniform; digits uniform in 0..9. Every digit's right answer flips with the rule, so no decision
    follows from the token before it. Response: ``mark odd : 3 yes , 8 no , 5 yes``.
    """

    name: ClassVar[str] = "rule"
    labels: ClassVar[tuple[str, str]] = ("no", "yes")
    keywords: ClassVar[tuple[str, ...]] = ("find", "mark", "odd", "even", ":")
    separators: ClassVar[tuple[str, ...]] = (",",)  # no free words: decisions are the only branch points

    def sample_prompts(self, n: int, generator: torch.Generator) -> list[Problem]:
        """``n`` problems ``(r, d_1..d_K)``."""
        rules = torch.randint(0, 2, (n, 1), generator=generator)
        draws = torch.randint(0, 10, (n, self.num_digits), generator=generator)
        return [tuple(int(x) for x in row) for row in torch.cat([rules, draws], dim=1)]

    def prompt_text(self, problem: Problem) -> str:
        """``find odd : 3 8 5 :``."""
        return " ".join(["find", self._rule(problem), ":", *map(str, problem[1:]), ":"])

    @staticmethod
    def _rule(problem: Problem) -> str:
        return ("even", "odd")[problem[0]]

    def digits(self, problem: Problem) -> tuple[int, ...]:
        return problem[1:]

    def lead_in(self, problem: Problem) -> list[str]:
        return ["mark", self._rule(problem), ":"]

    def item_words(self, problem: Problem, digit: int, label: str) -> list[str]:
        return [str(digit), label]

    def right_label(self, problem: Problem, digit: int) -> str:
        return self.labels[int(digit % 2 == problem[0])]


@dataclass(frozen=True)
class ChainTask(ParityTask):
    """Label the parity of the running sum after each of ``K`` digits (problem = the digits, drawn as
    for parity).

    ``K = 4`` by default (a decision more than ``rule``). Label ``i`` is ``odd`` when
    ``d_1 + ... + d_i`` is odd: it equals label ``i - 1`` flipped by an odd ``d_i``, so each decision
    depends on the one before it, and an early mistake carried forward dooms the rest. Response:
    ``sum : 3 odd , 8 odd , 5 even , 6 even``.
    """

    num_digits: int = 4
    name: ClassVar[str] = "chain"
    keywords: ClassVar[tuple[str, ...]] = ("chain", "sum", ":")
    separators: ClassVar[tuple[str, ...]] = (",",)  # no free words: decisions are the only branch points

    def prompt_text(self, problem: Problem) -> str:
        """``chain 3 8 5 6 :``."""
        return " ".join(["chain", *map(str, problem), ":"])

    def lead_in(self, problem: Problem) -> list[str]:
        return ["sum", ":"]

    def right_labels(self, problem: Problem) -> list[str]:
        """The parity of each running sum ``d_1 + ... + d_i`` (``labels[s % 2]``, as parity labels a digit)."""
        sums = torch.tensor(problem).cumsum(0).tolist()
        return [self.labels[s % 2] for s in sums]


TASKS: dict[str, type[ItemTask]] = {"parity": ParityTask, "rule": RuleTask, "chain": ChainTask}


def make_task(name: str, num_digits: int | None = None) -> ItemTask:
    """The task called ``name`` with ``K = num_digits`` (the task's default when None).

    Raises:
        ValueError: one line naming the known tasks, for an unknown name.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}.")
    return TASKS[name]() if num_digits is None else TASKS[name](num_digits=num_digits)
