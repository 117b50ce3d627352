"""The original DeepFakes autoencoder in Flax NNX: one shared encoder, one decoder per
person. At the `original` preset it has exactly the original's 82,062,470 parameters.

Parameters are always float32; `dtype` is the precision of the computation (convolutions
and matrix products in bfloat16 for mixed precision). The output is float32."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization, traverse_util

PRESETS = {
    # The 2017 model: 64 px, encoder 128/256/512/1024, Dense 1024, Dense 4x4x1024.
    "original": dict(resolution=64, encoder_widths=(128, 256, 512, 1024), latent=1024, dense_side=4,
                     dense_channels=1024, decoder_widths=(256, 128, 64)),
    # faceswap's Original "lowmem": no 1024 conv, Dense 512.
    "original-lowmem": dict(resolution=64, encoder_widths=(128, 256, 512), latent=512, dense_side=4,
                            dense_channels=1024, decoder_widths=(256, 128, 64)),
    # The same design at 128 px: the dense block works on 8x8 (Dense 8x8x512).
    "original-128": dict(resolution=128, encoder_widths=(128, 256, 512, 1024), latent=1024, dense_side=8,
                         dense_channels=512, decoder_widths=(256, 128, 64)),
    # The same design at half the widths: a quarter of the arithmetic (1.0 against 3.8
    # GFLOP a face), so four times the steps in the same time on a CPU.
    "lite": dict(resolution=64, encoder_widths=(64, 128, 256, 512), latent=512, dense_side=4, dense_channels=512,
                 decoder_widths=(128, 64, 32)),
    # Same shape of network, a few hundred times cheaper: for tests and quick looks.
    "tiny": dict(resolution=64, encoder_widths=(16, 32, 64, 128), latent=128, dense_side=4, dense_channels=128,
                 decoder_widths=(64, 32, 16)),
}

glorot = nnx.initializers.glorot_uniform()  # Keras' default, as in the original


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    resolution: int
    encoder_widths: tuple[int, ...]
    latent: int
    dense_side: int  # the Dense block's output is reshaped to dense_side x dense_side x dense_channels
    dense_channels: int
    decoder_widths: tuple[int, ...]

    @classmethod
    def from_preset(cls, name: str) -> "ModelSettings":
        return cls(**PRESETS[name])

    @property
    def conv_side(self) -> int:
        """Side of the last conv's feature map (4 at 64 px)."""
        return self.resolution // 2 ** len(self.encoder_widths)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelSettings":
        return cls(data["resolution"], tuple(data["encoder_widths"]), data["latent"], data["dense_side"],
                   data["dense_channels"], tuple(data["decoder_widths"]))


def pixel_shuffle(x: jax.Array, r: int = 2) -> jax.Array:
    """Depth to space with the channel order of the original Keras PixelShuffler."""
    b, h, w, c = x.shape
    oc = c // (r * r)
    x = x.reshape(b, h, w, r, r, oc).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, oc)


def conv_as_matmul(conv: nnx.Conv, x: jax.Array, stride: int = 1) -> jax.Array:
    """`conv(x)` (SAME padding) computed as one matrix product: the k x k patches are
    gathered by slicing, then multiplied by the kernel (same parameters, same result to
    float rounding).

    XLA:CPU runs convolutions on small maps far below its matmul rate; the input gradient
    of the 4th encoder conv (8x8x512 to 4x4x1024, stride 2) took 7.5 s of a 9 s step at
    batch 16. As a matmul its forward and backward take 0.12 s. On maps over 8x8 the
    plain conv is as fast or faster, so only small maps go this way."""
    kernel = conv.kernel[...].astype(conv.dtype)
    x = x.astype(conv.dtype)
    k, _, channels, _ = kernel.shape
    b, h, w, _ = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((out_h - 1) * stride + k - h, 0), max((out_w - 1) * stride + k - w, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    patches = jnp.concatenate([x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
                               for i in range(k) for j in range(k)], axis=-1)
    y = patches.reshape(-1, k * k * channels) @ kernel.reshape(k * k * channels, -1)
    return y.reshape(b, out_h, out_w, -1) + conv.bias[...].astype(conv.dtype)


# Output side at or under which convolutions go through `conv_as_matmul` (measured).
MATMUL_SIDE = 8


def apply_conv(conv: nnx.Conv, x: jax.Array, stride: int = 1) -> jax.Array:
    return conv_as_matmul(conv, x, stride) if -(-x.shape[1] // stride) <= MATMUL_SIDE else conv(x)


class Upscale(nnx.Module):
    """Conv 3x3 to 4x filters, LeakyReLU 0.1, pixel shuffle: doubles the side."""

    def __init__(self, in_features: int, filters: int, *, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_features, filters * 4, (3, 3), padding="SAME", kernel_init=glorot, dtype=dtype,
                             rngs=rngs)

    def __call__(self, x):
        return pixel_shuffle(nnx.leaky_relu(apply_conv(self.conv, x), 0.1))


class Encoder(nnx.Module):
    def __init__(self, s: ModelSettings, *, dtype, rngs: nnx.Rngs):
        widths = (3,) + tuple(s.encoder_widths)
        self.convs = nnx.List([
            nnx.Conv(cin, cout, (5, 5), strides=2, padding="SAME", kernel_init=glorot, dtype=dtype, rngs=rngs)
            for cin, cout in zip(widths[:-1], widths[1:])
        ])
        flat_in = s.conv_side * s.conv_side * s.encoder_widths[-1]
        flat_out = s.dense_side * s.dense_side * s.dense_channels
        self.dense_in = nnx.Linear(flat_in, s.latent, kernel_init=glorot, dtype=dtype, rngs=rngs)
        self.dense_out = nnx.Linear(s.latent, flat_out, kernel_init=glorot, dtype=dtype, rngs=rngs)
        self.upscale = Upscale(s.dense_channels, s.dense_channels // 2, dtype=dtype, rngs=rngs)
        self.side, self.channels, self.dtype = s.dense_side, s.dense_channels, dtype

    def __call__(self, x):
        x = x.astype(self.dtype)
        for conv in self.convs:
            x = nnx.leaky_relu(apply_conv(conv, x, stride=2), 0.1)
        x = self.dense_out(self.dense_in(x.reshape(x.shape[0], -1)))
        x = x.reshape(x.shape[0], self.side, self.side, self.channels)
        return self.upscale(x)


class Decoder(nnx.Module):
    def __init__(self, s: ModelSettings, *, dtype, rngs: nnx.Rngs):
        widths = (s.dense_channels // 2,) + tuple(s.decoder_widths)
        self.upscales = nnx.List([Upscale(cin, cout, dtype=dtype, rngs=rngs)
                                  for cin, cout in zip(widths[:-1], widths[1:])])
        self.out = nnx.Conv(widths[-1], 3, (5, 5), padding="SAME", kernel_init=glorot, dtype=dtype, rngs=rngs)

    def __call__(self, z):
        for up in self.upscales:
            z = up(z)
        return nnx.sigmoid(self.out(z).astype(jnp.float32))


class FaceSwapModel(nnx.Module):
    """`encode` then `decode(z, "a")` rebuilds person A; `decode(z, "b")` draws B."""

    def __init__(self, settings: ModelSettings, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.settings = settings
        self.encoder = Encoder(settings, dtype=dtype, rngs=rngs)
        self.decoder_a = Decoder(settings, dtype=dtype, rngs=rngs)
        self.decoder_b = Decoder(settings, dtype=dtype, rngs=rngs)

    def decode(self, z, side: str):
        return self.decoder_a(z) if side == "a" else self.decoder_b(z)

    def __call__(self, x, side: str):
        return self.decode(self.encoder(x), side)


def count_params(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return {"/".join(map(str, k)): np.asarray(v) for k, v in traverse_util.flatten_dict(pure).items()}


def weights_bytes(model: FaceSwapModel) -> bytes:
    """Parameters as msgpack (Flax serialization; never pickle)."""
    return serialization.msgpack_serialize(_flat_params(model))


PARTS = ("encoder", "decoder_a", "decoder_b")


def load_weights(model: FaceSwapModel, data: bytes, parts: dict[str, str] | None = None) -> FaceSwapModel:
    """Set the model's parameters from `weights_bytes` data. `parts` maps parts of this
    model to the parts of the saved one they take (e.g. {"encoder": "encoder",
    "decoder_a": "decoder_b"}); parts not named keep their values. None: every part."""
    parts = {part: part for part in PARTS} if parts is None else parts
    flat = serialization.msgpack_restore(data)
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    expected = traverse_util.flatten_dict(pure)
    restored = {}
    for key, value in expected.items():
        if key[0] not in parts:
            restored[key] = value
            continue
        name = "/".join(map(str, (parts[key[0]],) + key[1:]))
        if name not in flat or tuple(flat[name].shape) != tuple(value.shape):
            raise ValueError(f"weights do not match the model at {name}")
        restored[key] = jnp.asarray(flat[name])
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(restored))
    nnx.update(model, state)
    return model


@nnx.jit(static_argnames="side")
def reconstruct(model: FaceSwapModel, faces, side: str):
    """Faces (float [0, 1]) encoded and drawn by one side's decoder."""
    return model(faces, side)
