"""The demo's task: label the parity of a few digits. Its words, prompts, format and checker.

Why this task (it is built from TEMPO's premise, and fixed before any estimator was compared):

* **A few decision tokens decide the outcome.** A response echoes each digit of the prompt and
  labels it ``odd`` or ``even``, with a free separator word (``,`` or ``and``) between items.
  Only the ``K`` label tokens carry the outcome; the rest (the echoed digits, the separators,
  ``<eos>``) is low-stakes format that the supervised warm-up teaches. The reward is 1 only
  when *every* label is right, so a failed response usually contains right labels too: exactly
  the credit-assignment problem that one sequence-level advantage (GRPO) gets wrong on them.
* **Responses to one prompt share prefixes.** The digits are echoed deterministically, so the
  ``G`` responses of a prompt part ways only at the labels (the decisive branches) and at the
  separators (low-stakes branches: they never change the reward). The prefix tree therefore has
  both kinds of branch, as real reasoning traces do.
* **It is verifiable** by an exact checker and **learnable by reward alone**: the warm-up data
  draws labels uniformly at random, so the warmed-up policy knows the format but guesses each
  parity (success ``2**-K`` at the start); only reinforcement learning can teach the map from
  digit to parity.

Example (``K = 3``)::

    prompt:   parity 3 8 5 :
    response: 3 odd , 8 even and 5 odd <eos>        -> reward 1.0
    response: 3 odd and 8 odd , 5 odd <eos>         -> reward 0.0  (8 is even)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["EOS", "LABELS", "PAD", "SEPARATORS", "UNK", "ParityTask"]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SEPARATORS = (",", "and")  # the free, low-stakes word between two items
LABELS = ("even", "odd")  # LABELS[d % 2] is the right label of digit d
DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class ParityTask:
    """Label each of ``num_digits`` digits ``odd``/``even``; reward 1 only if the format and all labels are right.

    Attributes:
        num_digits: ``K``, the number of digits per prompt (= decision tokens per response).
    """

    num_digits: int = 3

    # ----- vocabulary --------------------------------------------------------------------------
    @property
    def words(self) -> list[str]:
        """Every word of the task, special tokens first (``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2)."""
        return [PAD, EOS, UNK, "parity", ":", *SEPARATORS, *LABELS, *DIGITS]

    @property
    def max_response_words(self) -> int:
        """Words in a well-formed response, ``<eos>`` excluded: 2 per digit and a separator between digits."""
        return 2 * self.num_digits + (self.num_digits - 1)

    # ----- prompts and responses ---------------------------------------------------------------
    def sample_digits(self, n: int, generator: torch.Generator) -> list[tuple[int, ...]]:
        """``n`` prompts, each ``K`` digits drawn uniformly from 0..9 (with replacement)."""
        draws = torch.randint(0, 10, (n, self.num_digits), generator=generator)
        return [tuple(int(d) for d in row) for row in draws]

    @staticmethod
    def prompt_text(digits: tuple[int, ...]) -> str:
        """``parity 3 8 5 :``."""
        return " ".join(["parity", *map(str, digits), ":"])

    @staticmethod
    def response_text(digits: tuple[int, ...], labels: tuple[str, ...], separators: tuple[str, ...]) -> str:
        """A well-formed response with the given labels and separators: ``3 odd , 8 even and 5 odd``."""
        words = []
        for i, (d, lab) in enumerate(zip(digits, labels, strict=True)):
            if i:
                words.append(separators[i - 1])
            words += [str(d), lab]
        return " ".join(words)

    def format_example(self, digits: tuple[int, ...], generator: torch.Generator) -> str:
        """A warm-up response: the right format, connectors *and labels* drawn uniformly at random.

        The labels are coin flips on purpose: the warm-up teaches the format only, never the answer.
        """
        coins = torch.randint(0, 2, (2, self.num_digits), generator=generator).tolist()
        separators = tuple(SEPARATORS[c] for c in coins[0][1:])
        labels = tuple(LABELS[c] for c in coins[1])
        return self.response_text(digits, labels, separators)

    # ----- checker ------------------------------------------------------------------------------
    def score(self, digits: tuple[int, ...], response: str) -> float:
        """The verifiable reward of one response (special tokens already stripped).

        Returns 1.0 exactly when the response is ``d_1 l_1 s_1 d_2 l_2 ... s_{K-1} d_K l_K`` with
        the prompt's digits in order, each ``l_i`` the digit's parity and each separator ``s_i`` in
        :data:`SEPARATORS`; anything else (a wrong label, a wrong or missing digit, a missing
        separator, extra words) scores 0.0.
        """
        words = response.split()
        if len(words) != self.max_response_words or len(digits) != self.num_digits:
            return 0.0
        for i, d in enumerate(digits):
            if i and words[3 * i - 1] not in SEPARATORS:
                return 0.0
            if words[3 * i] != str(d) or words[3 * i + 1] != LABELS[d % 2]:
                return 0.0
        return 1.0
