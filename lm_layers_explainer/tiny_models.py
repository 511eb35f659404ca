"""The tiny models of the catalog: random GPT-2, BERT, BART and ViT models with a few layers of
width 32, built in memory under a fixed seed (the same weights in every process), with
tokenizers trained or listed from a small corpus. For fast tests: what they predict means
nothing.

>>> model, tokenizer = gpt2("causal")
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .locks import LOADING, seeded

_TINY_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.",
    "The keys to the cabinet are on the table. The key to the cabinet is on the table.",
    "The cat sat on the mat. The cat lay on the rug. The dog sat on the mat.",
    "Heathrow airport is in the city of London. The Eiffel Tower stands in the city of Paris.",
    "The House Budget Committee voted Saturday to pass a spending bill.",
    "The House Budget Committee passed a spending bill.",
    "A language model predicts the next token. Attention mixes information between tokens.",
    "The movie was good. The movie was bad. I liked it. I hated it. This is great. This is awful.",
]


def _byte_level_tokenizer(special: list[str], vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    return tokenizer


def _wordpiece_tokenizer():
    """An uncased WordPiece tokenizer whose vocabulary is listed, not trained: the words of
    the corpus, plus single letters and digits (also as ``##`` pieces) for other words.
    (tokenizers' WordPieceTrainer breaks ties differently from one process to the next.)"""
    import re
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for line in _TINY_CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    chars = list(string.ascii_lowercase + string.digits)
    pieces = special + words + [c for c in chars + list(string.punctuation) if c not in words]
    pieces += ["##" + c for c in chars]
    tokenizer = Tokenizer(
        models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tokenizer


def _finish(model, *, device=None, torch_dtype=None, device_map=None):
    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    target = device if device is not None else device_map
    if isinstance(target, dict):
        raise ValueError("tiny catalog models take device_map as one device name, not a dict")
    if target not in (None, "auto"):
        model = model.to(target)
    return model.eval()


def _seeded(build: Callable):
    """Build a model under a fixed seed without touching the caller's random state (one
    build at a time in the process: torch's initializers draw from its global generator)."""
    with LOADING, seeded(0):
        return build()


def gpt2(kind, **options):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = _byte_level_tokenizer(["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        architectures=["GPT2LMHeadModel"],
        attn_implementation="eager",
    )
    return _finish(_seeded(lambda: GPT2LMHeadModel(config)), **options), tokenizer


def bert(kind, **options):
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece_tokenizer(),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # pairs: segments
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        attn_implementation="eager",
    )
    if kind == "token_classifier":  # a named-entity tagger's labels
        labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    model_class = {
        "masked": BertForMaskedLM,
        "encoder": BertModel,
        "classifier": BertForSequenceClassification,
        "question_answering": BertForQuestionAnswering,
        "token_classifier": BertForTokenClassification,
    }[kind]
    config.architectures = [model_class.__name__]
    return _finish(_seeded(lambda: model_class(config)), **options), tokenizer


def vit(kind, **options):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    labels = ["cat", "dog", "bird"]
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["ViTForImageClassification"],
        attn_implementation="eager",
    )
    # The PIL image processor: the default ViTImageProcessor needs torchvision.
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    return _finish(_seeded(lambda: ViTForImageClassification(config)), **options), processor


def bart(kind, **options):
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    raw = _byte_level_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # ids 0..4
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        architectures=["BartForConditionalGeneration"],
        attn_implementation="eager",
    )
    return _finish(_seeded(lambda: BartForConditionalGeneration(config)), **options), tokenizer
