"""Prompt templates per task (``configs/prompts/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from must.config import load_config

__all__ = ["PromptConfig", "load_prompts"]


@dataclass
class PromptConfig:
    """System prompt, a template with ``{question}`` and ``{instruction}``, and an instruction per task."""

    system: str = ""
    template: str = "{question}\n\n{instruction}"
    instructions: dict[str, str] = field(default_factory=dict)

    def render(self, task: str, question: str) -> str:
        """The user prompt for one question."""
        return self.template.format(question=question, instruction=self.instructions.get(task, "")).strip()


def load_prompts(path: str | None = None) -> PromptConfig:
    """The shipped default prompts, or a user file."""
    return load_config(PromptConfig, path or "prompts/default.yaml")
