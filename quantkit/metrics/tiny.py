"""Tiny, seeded, randomly initialised checkpoints in the real formats of the learned metrics' weights.

They let CPU tests and benchmarks run the real loading and scoring code (open_clip + HPS checkpoint, open_clip
weights, transformers ``CLIPModel`` + processor folder, torchvision AlexNet for LPIPS) without the real weights.
Their scores mean nothing: never report numbers from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from quantkit.metrics.weights import ALEXNET_FILE, HPSV2_FILES

TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def save_tiny_open_clip(folder: Path, seed: int = 0) -> tuple[str, torch.nn.Module]:
    """An open_clip ``local-dir:`` architecture in ``folder`` (config only) plus, in the same folder, its weights as an
    HPS checkpoint for each version (``{"state_dict": ...}`` under the upstream names) and as a plain open_clip state
    dict ``open_clip_pytorch_model.bin``. Returns the ``arch`` string and the model itself."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP_CFG}))
    torch.manual_seed(seed)
    arch = f"local-dir:{folder}"
    model = open_clip.create_model(arch, load_weights=False).eval()
    for filename in HPSV2_FILES.values():
        torch.save({"state_dict": model.state_dict()}, folder / filename)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return arch, model


def save_tiny_pickscore(folder: Path, seed: int = 0) -> torch.nn.Module:
    """A transformers ``CLIPModel`` and ``CLIPProcessor`` saved together in ``folder``. The tokenizer is the real CLIP
    BPE (built from open_clip's bundled vocabulary); the image processor resizes to 32 and centre-crops."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    bpe = SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {special.get(token, token): index for token, index in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=merges),
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model


def save_random_alexnet(torch_home: Path, seed: int = 0) -> Path:
    """A seeded random torchvision AlexNet state dict where torch hub keeps the ImageNet one under ``torch_home``.

    Only ``features`` (the part LPIPS uses) is initialised; the 58M-parameter classifier is stored as zeros broadcast
    from one element, which keeps the file at 10 MB and still loads strictly into ``torchvision.models.alexnet``.
    """
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.AlexNet()
    model.to_empty(device="cpu")
    torch.manual_seed(seed)
    for layer in model.features:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    state = {
        key: tensor if key.startswith("features.") else torch.zeros(1).expand(tensor.shape)
        for key, tensor in model.state_dict().items()
    }
    path = torch_home / "hub" / "checkpoints" / ALEXNET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
