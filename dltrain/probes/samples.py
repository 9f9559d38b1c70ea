"""Text a language model writes: at step 0 and after every validation, a continuation of a fixed
prompt (the start of the validation text), sampled from the model's next-character
distribution. Logged as TensorBoard text `probe/samples` and appended to RUN_DIR/samples.txt.

Every sample is drawn from a generator of its own, seeded the same each time: two samples
differ because the model changed, not the dice.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dltrain.data.spec import DataSpec
from dltrain.data.text import decode
from dltrain.probes.context import ProbeContext, looking
from dltrain.probes.tags import SAMPLES
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState


def refusal(spec: DataSpec) -> str | None:
    """Why this probe cannot look at `spec`'s data, or None."""
    if spec.task == "language_model" and spec.vocab:
        return None
    return (f"probe=[samples] writes text with a language model; data={spec.name} is not text "
            "(use data=text data.path=FILE or data=tiny_shakespeare with model=transformer)")


def generate(model: torch.nn.Module, prompt: torch.Tensor, length: int, context: int,
             temperature: float, gen: torch.Generator) -> torch.Tensor:
    """`prompt` (T,) of ids followed by `length` sampled ids; the model sees at most `context`
    of the latest ids, as in training."""
    ids = prompt.view(1, -1)
    with looking(model):
        for _ in range(length):
            logits = model(ids[:, -context:])[:, -1, :].float()  # (1, vocab)
            probs = torch.softmax(logits / temperature, dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], dim=1)
    return ids[0]


def as_markdown(text: str, prompt_chars: int, step: int, temperature: float) -> str:
    """TensorBoard's text tab reads markdown: indented lines keep the text as it is."""
    body = "\n".join("    " + line for line in text.split("\n"))
    return (f"step {step}, temperature {temperature:g}; the first {prompt_chars} characters "
            f"are the prompt:\n\n{body}")


class Samples(NoHooks):
    def __init__(self, ctx: ProbeContext, *, length: int, prompt: int, temperature: float,
                 seed: int) -> None:
        self.ctx = ctx
        self.length, self.temperature, self.seed = length, temperature, seed
        self.context = int(ctx.spec.input_shape[0])
        self.prompt = ctx.data.val.x[0, : min(prompt, self.context)].long()

    def start(self, state: TrainState) -> None:
        self.write(state.step)

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        self.write(state.step)

    def sample(self) -> str:
        gen = torch.Generator(device=self.prompt.device).manual_seed(self.seed)
        ids = generate(self.ctx.model, self.prompt, self.length, self.context,
                       self.temperature, gen)
        return decode(ids, self.ctx.spec.vocab)

    def write(self, step: int) -> None:
        text = self.sample()
        self.ctx.logger.log_text(SAMPLES,
                                 as_markdown(text, len(self.prompt), step, self.temperature), step)
        with open(self.ctx.run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- step {step}\n{text}\n\n")
