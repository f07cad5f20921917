"""Engine performance for an 8B model (Llama-3-8B / 3.1-8B, bf16) on one GPU.

Every number is an approximation stated with where it comes from. The
simulator only needs orders of magnitude right: the autoscaling policies are
compared on the same numbers, so a 20 % error moves every policy alike.

Model facts (Llama-3-8B config.json: 32 layers, 8 KV heads of dim 128, bf16):
- weights: 8.03e9 parameters x 2 bytes = 16.06 GB (14.96 GiB);
- KV cache per token: 32 layers x 8 heads x 128 dims x 2 (K and V) x 2 bytes
  = 131,072 bytes = 128 KiB (grouped-query attention makes this 4x smaller
  than Llama-2-7B's 512 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # 128 KiB, see above
WEIGHT_BYTES = 8.03e9 * 2


def kv_capacity_tokens(gpu_memory_gib: float, memory_utilization: float = 0.90, reserve_gib: float = 3.0) -> int:
    """KV-cache tokens vLLM can hold: the memory it may use minus weights and a reserve.

    vLLM's default --gpu-memory-utilization is 0.90; the reserve (activations of
    an 8192-token batch, CUDA graphs, allocator slack) is an estimate. For
    80 GiB this gives (72 - 14.96 - 3) GiB / 128 KiB = 442k tokens, close to the
    ~450k-token KV cache vLLM logs for Llama-3-8B on 80 GB cards.
    """
    usable = gpu_memory_gib * memory_utilization * GIB - WEIGHT_BYTES - reserve_gib * GIB
    return int(usable // KV_BYTES_PER_TOKEN)


@dataclass(frozen=True)
class Hardware:
    name: str
    # Decode step time with a tiny batch: every step reads all weights from HBM.
    step_floor_s: float
    # Extra step time per KV-cache token resident in the batch (attention reads it each step).
    kv_read_s_per_token: float
    # Compute-bound rate of a step's batched tokens (prefill chunks plus decode tokens).
    token_rate_per_s: float
    kv_capacity_tokens: int
    # vLLM scheduler limits (defaults of recent vLLM for the OpenAI server on 80 GB GPUs).
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192

    def step_floor(self, resident_kv_tokens: float) -> float:
        """Memory-bound step time: weights plus the KV cache of the sequences in the batch."""
        return self.step_floor_s + resident_kv_tokens * self.kv_read_s_per_token


# H100 SXM 80 GB: 3.35 TB/s HBM3, 989 TFLOPS dense bf16 (NVIDIA H100 datasheet).
# - step floor 7 ms: 16.06 GB / 3.35 TB/s = 4.8 ms at full bandwidth; at the ~75 % of
#   peak bandwidth decode kernels reach, plus ~1 ms of sampling and scheduling, ~7 ms.
#   Published vLLM TPOT for Llama-3.1-8B on 1xH100 at low concurrency is 6-8 ms
#   (vLLM v0.6 performance blog, Sept 2024; Lambda's vLLM A100/H100 benchmark).
# - KV read: 128 KiB / (0.75 x 3.35 TB/s) = 52 ns per resident token per step.
# - token rate 20k tokens/s: 2 x 8.03e9 FLOP per token = 16 GFLOP; at ~33 % MFU
#   (attention and non-matmul work included) 989e12 x 0.33 / 16e9 = 20k tokens/s,
#   in line with the 15-25k prefill tokens/s reported for 8B models on one H100.
H100 = Hardware(
    name="h100",
    step_floor_s=0.007,
    kv_read_s_per_token=KV_BYTES_PER_TOKEN / (0.75 * 3.35e12),
    token_rate_per_s=20_000,
    kv_capacity_tokens=kv_capacity_tokens(80),
)

# A100 SXM 80 GB: 2.04 TB/s HBM2e, 312 TFLOPS dense bf16 (NVIDIA A100 datasheet).
# - step floor 11 ms: 16.06 GB / 2.04 TB/s = 7.9 ms at peak; at ~75 % plus ~1 ms,
#   ~11 ms. One measured point: Llama-3.1-8B on an A100 40GB (1.56 TB/s) decodes one
#   request at ~75 tokens/s = 13 ms per token (johnmusgrave.com vLLM sweep, 2025),
#   which scales to ~10-11 ms at 2.04 TB/s.
# - token rate 8k tokens/s: 312e12 x 0.41 / 16e9; H100 is commonly measured at
#   2-2.5x an A100 for prefill-heavy 8B workloads (Lambda vLLM benchmark).
A100 = Hardware(
    name="a100",
    step_floor_s=0.011,
    kv_read_s_per_token=KV_BYTES_PER_TOKEN / (0.75 * 2.04e12),
    token_rate_per_s=8_000,
    kv_capacity_tokens=kv_capacity_tokens(80),
)

HARDWARE = {hardware.name: hardware for hardware in (H100, A100)}
