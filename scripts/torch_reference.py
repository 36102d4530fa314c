#!/usr/bin/env python3
"""PyTorch baselines for Lighthouse's CUDA benchmarks, to be timed on the same card in the same call.

docs/benchmarks.md compares only numbers from the same card and run, so run this next to
`lighthouse bench --device cuda ...`. Output lines mirror ours (src/bench/bench_*.cpp).

    python3 scripts/torch_reference.py attention --seq-lens 4096 16384 65536 \
        [--batch 1 --heads 8 --head-dim 128 --iters 10 --warmup 3 --backend cudnn] [--json OUT]
    python3 scripts/torch_reference.py train --seq-len 4096 --micro-batch 8 \
        [--steps 5 --warmup 2] [--compile] [--checkpoint-layers] [--precision amp|bf16] [--json OUT]

attention: one causal layer, F.scaled_dot_product_attention forced to one backend (default cuDNN via
  torch.nn.attention.sdpa_kernel), bf16 q/k/v [B, H, N, d] drawn from N(0, 1) with requires_grad.
  "fwd" is a training forward (grad enabled); "fwd+bwd" adds out.backward(dout).
  FLOPs: fwd = 2*B*H*N^2*d (causal half of QK^T and PV), fwd+bwd = 3.5x fwd.
train: a minimal Llama of the 270M shape (dim 1024, 30 layers, 8 heads of 128, 8 kv heads, SwiGLU
  1536, vocab 257, RMSNorm eps 1e-5, RoPE theta 1e4 rotate-half, untied lm_head), random tokens,
  cuDNN SDPA causal attention, fused AdamW (lr 1e-4, betas 0.9/0.95, eps 1e-8, wd 0.1, as the
  C++ bench). Default precision "amp": fp32 master weights + bf16 autocast, the standard recipe
  and the same scheme as ours (fp32 master + bf16 compute copy). "bf16": bf16 weights and
  optimizer state, as in LIGHTHOUSE.md's reference table. A step = zero_grad, forward,
  backward, optimizer step. FLOPs/token = 6*(params - embedding) + 6*layers*T*q_dim.
  --compile wraps each block in torch.compile (default mode); --checkpoint-layers recomputes
  each block in backward (torch.utils.checkpoint, non-reentrant).
Timing: CUDA events around each iteration, synchronised, median after warm-up.
Exit status: 0 ok, 1 runtime failure (out of memory, no kernel for the backend), 2 no CUDA/torch.
"""
import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.checkpoint import checkpoint
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"error: PyTorch (>= 2.3 with torch.nn.attention) is required: {e}", file=sys.stderr)
    sys.exit(2)

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def median_ms(fn, warmup, iters):
    """Median wall time of fn() in ms, measured with CUDA events, synchronising every iteration."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


class GpuMonitor:
    """The SM clock, power and energy of device 0 while work runs, read through NVML with ctypes
    (as src/common/gpu_monitor.cpp does for ours): a step time means little without the clock it
    ran at, and an H100 or H200 at its power limit runs well below its boost clock.
    Unavailable (start and stop do nothing) where NVML cannot be loaded."""

    POWER_REASONS = 0x4 | 0x80  # software power cap, hardware power brake

    def __init__(self, sample_s=0.02):
        import ctypes
        self.c, self.sample_s, self.nvml, self.dev = ctypes, sample_s, None, None
        try:
            nvml = ctypes.CDLL("libnvidia-ml.so.1")
            assert nvml.nvmlInit_v2() == 0
            p = torch.cuda.get_device_properties(0)
            bus = f"{p.pci_domain_id:08X}:{p.pci_bus_id:02X}:{p.pci_device_id:02X}.0".encode()
            dev = ctypes.c_void_p()
            assert nvml.nvmlDeviceGetHandleByPciBusId_v2(bus, ctypes.byref(dev)) == 0
            self.reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                nvml.nvmlDeviceGetCurrentClocksThrottleReasons
            self.nvml, self.dev = nvml, dev
            self.limit_w = self._uint(nvml.nvmlDeviceGetEnforcedPowerLimit) / 1e3
            self.max_mhz = self._uint(nvml.nvmlDeviceGetMaxClockInfo, 1)
        except (OSError, AttributeError, AssertionError):
            self.nvml = None

    def _uint(self, fn, *args, kind=None):
        v = (kind or self.c.c_uint)()
        if fn(self.dev, *args, self.c.byref(v)) != 0:
            raise AssertionError(fn.__name__)
        return v.value

    def _energy_mj(self):
        return self._uint(self.nvml.nvmlDeviceGetTotalEnergyConsumption, kind=self.c.c_ulonglong)

    def start(self):
        import threading
        if not self.nvml:
            return
        self.samples, self.running = [], True
        try:
            self.e0 = self._energy_mj()
        except AssertionError:
            self.e0 = None  # no counter, or a failed read: the power stays unknown
        self.t0 = time.perf_counter()

        def sample():
            while self.running:  # a failed read skips that sample, as ours does
                try:
                    mhz = self._uint(self.nvml.nvmlDeviceGetClockInfo, 1)
                    capped = bool(self._uint(self.reasons, kind=self.c.c_ulonglong) & self.POWER_REASONS)
                    self.samples.append((mhz, capped))
                except AssertionError:
                    pass
                time.sleep(self.sample_s)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()

    def stop(self):
        """A dict of the readings since start() (keys as in our bench's JSON), or None."""
        if not self.nvml:
            return None
        self.running = False
        self.thread.join()
        seconds = time.perf_counter() - self.t0
        g = {"gpu_seconds": seconds, "gpu_power_limit_w": self.limit_w, "sm_clock_max_mhz": self.max_mhz,
             "clock_samples": len(self.samples)}
        if self.samples:
            clocks = [m for m, _ in self.samples]
            g.update(sm_clock_mhz=statistics.mean(clocks), sm_clock_min_mhz=min(clocks),
                     power_capped_fraction=sum(c for _, c in self.samples) / len(self.samples))
        try:
            if self.e0 is not None:
                joules = (self._energy_mj() - self.e0) / 1e3
                g.update(gpu_energy_j=joules, gpu_power_w=joules / seconds)
        except AssertionError:
            pass
        return g

    @staticmethod
    def describe(g):
        power = f"{g['gpu_power_w']:.0f} W" if "gpu_power_w" in g else "power unknown"
        if not g["clock_samples"]:
            return f"no SM clock readings (boost {g['sm_clock_max_mhz']:.0f} MHz), {power} of {g['gpu_power_limit_w']:.0f} W"
        return (f"{g['sm_clock_mhz']:.0f} MHz mean SM clock (min {g['sm_clock_min_mhz']:.0f}, boost "
                f"{g['sm_clock_max_mhz']:.0f}), {power} of {g['gpu_power_limit_w']:.0f} W "
                f"(power-capped {100 * g['power_capped_fraction']:.0f}% of the time)")


def device_banner():
    p = torch.cuda.get_device_properties(0)
    print(f"# {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}", flush=True)


# ---------------------------------------------------------------- attention
def bench_attention(a):
    backend = BACKENDS[a.backend]
    records = []
    for n in a.seq_lens:
        shape = (a.batch, a.heads, n, a.head_dim)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)

        fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731

        def fwd_bwd():
            q.grad = k.grad = v.grad = None
            fwd().backward(dout)

        with sdpa_kernel(backend):
            fwd_ms = median_ms(fwd, a.warmup, a.iters)
            step_ms = median_ms(fwd_bwd, a.warmup, a.iters)
        fwd_flops = 2.0 * a.batch * a.heads * n * n * a.head_dim
        r = {"benchmark": "attention", "impl": f"torch_sdpa_{a.backend}", "seq_len": n, "batch": a.batch,
             "heads": a.heads, "head_dim": a.head_dim, "fwd_ms": fwd_ms, "fwd_bwd_ms": step_ms,
             "fwd_tflops": fwd_flops / fwd_ms * 1e-9, "fwd_bwd_tflops": 3.5 * fwd_flops / step_ms * 1e-9}
        records.append(r)
        print(f"attention N={n:7d}  fwd {fwd_ms:9.3f} ms ({r['fwd_tflops']:6.1f} TFLOP/s)  "
              f"fwd+bwd {step_ms:9.3f} ms ({r['fwd_bwd_tflops']:6.1f} TFLOP/s)", flush=True)
        del q, k, v, dout
    return records


# ---------------------------------------------------------------- train
def rope_tables(seq_len, head_dim, theta):
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device="cuda", dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(seq_len, device="cuda", dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], dim=-1)  # rotate-half layout: [T, head_dim]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads, hidden, eps):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.attn_norm, self.ffn_norm = nn.RMSNorm(dim, eps=eps), nn.RMSNorm(dim, eps=eps)
        self.wq = nn.Linear(dim, heads * self.hd, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(heads * self.hd, dim, bias=False)
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.heads)
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, vocab=257, dim=1024, layers=30, heads=8, kv_heads=8, hidden=1536, eps=1e-5, theta=1e4):
        super().__init__()
        self.hd, self.theta = dim // heads, theta
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, kv_heads, hidden, eps) for _ in range(layers))
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        self.checkpoint_layers = False

    def forward(self, tokens, targets):
        cos, sin = rope_tables(tokens.shape[1], self.hd, self.theta)
        x = self.embed(tokens)
        for blk in self.blocks:
            x = checkpoint(blk, x, cos, sin, use_reentrant=False) if self.checkpoint_layers else blk(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def bench_train(a):
    # Force cuDNN SDPA globally (not with sdpa_kernel) so that checkpoint recomputation in backward
    # and torch.compile's tracing see the same choice; an unsupported case then fails loudly.
    for name, on in (("cudnn", True), ("flash", False), ("mem_efficient", False), ("math", False)):
        getattr(torch.backends.cuda, f"enable_{name}_sdp")(on)
    torch.manual_seed(1337)
    model = Llama().cuda()
    if a.precision == "bf16":
        model = model.to(torch.bfloat16)
    model.checkpoint_layers = a.checkpoint_layers
    n_params = sum(p.numel() for p in model.parameters())
    non_embedding = n_params - model.embed.weight.numel()
    if a.compile:
        for i, blk in enumerate(model.blocks):
            model.blocks[i] = torch.compile(blk)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    B, T = a.micro_batch, a.seq_len
    tokens, targets = (torch.randint(0, 257, (B, T), device="cuda") for _ in range(2))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "amp"):
            loss = model(tokens, targets)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    gpu = GpuMonitor()
    gpu.start()
    ms = median_ms(step, 0, a.steps)
    activity = gpu.stop()
    peak = torch.cuda.max_memory_allocated()
    tokens_per_step = B * T
    flops_per_token = 6.0 * non_embedding + 6.0 * len(model.blocks) * T * 1024
    tflops = flops_per_token * tokens_per_step / ms * 1e-9
    r = {"benchmark": "train_step", "impl": "torch" + ("_compile" if a.compile else "_eager"),
         "precision": a.precision, "checkpoint_layers": a.checkpoint_layers, "parameters": n_params,
         "micro_batch": B, "seq_len": T, "tokens_per_step": tokens_per_step, "step_ms": ms,
         "tokens_per_s": tokens_per_step / ms * 1e3, "model_tflops": tflops, "mfu": tflops / a.peak_tflops,
         "peak_memory_bytes": peak, "warmup_s": warm_s}
    print(f"# {n_params:,} parameters, {a.precision}, {'compiled' if a.compile else 'eager'}"
          f"{', checkpointed' if a.checkpoint_layers else ''}; {a.warmup} warm-up steps took {warm_s:.1f} s")
    print(f"train step: {ms:.1f} ms, {r['tokens_per_s']:.0f} tokens/s, {tflops:.1f} TFLOP/s, "
          f"MFU {100 * r['mfu']:.1f}% (of {a.peak_tflops:.0f} TFLOP/s), peak memory {peak / 2**30:.2f} GiB", flush=True)
    if activity:
        r["gpu"] = activity
        print(f"  GPU over the timed steps: {GpuMonitor.describe(activity)}", flush=True)
    return [r]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    at = sub.add_parser("attention", help="one causal SDPA layer, fwd and fwd+bwd")
    at.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 16384, 65536])
    at.add_argument("--batch", type=int, default=1)
    at.add_argument("--heads", type=int, default=8)
    at.add_argument("--head-dim", type=int, default=128)
    at.add_argument("--iters", type=int, default=10)
    at.add_argument("--warmup", type=int, default=3)
    at.add_argument("--backend", choices=sorted(BACKENDS), default="cudnn")
    tr = sub.add_parser("train", help="full training steps of the 270M-shape Llama")
    tr.add_argument("--seq-len", type=int, default=4096)
    tr.add_argument("--micro-batch", type=int, default=8)
    tr.add_argument("--steps", type=int, default=5)
    tr.add_argument("--warmup", type=int, default=2)
    tr.add_argument("--compile", action="store_true")
    tr.add_argument("--checkpoint-layers", action="store_true")
    tr.add_argument("--precision", choices=["amp", "bf16"], default="amp")
    tr.add_argument("--peak-tflops", type=float, default=989.0)
    for p in (at, tr):
        p.add_argument("--json", metavar="OUT", help="write the records as a JSON list to OUT")
    a = ap.parse_args()
    sizes = [a.iters, *a.seq_lens] if a.cmd == "attention" else [a.steps, a.seq_len, a.micro_batch]
    if min(sizes) < 1:
        ap.error("iteration counts and sizes must be positive")
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch; these baselines only run on a GPU", file=sys.stderr)
        sys.exit(2)
    device_banner()
    try:
        records = bench_attention(a) if a.cmd == "attention" else bench_train(a)
    except torch.cuda.OutOfMemoryError as e:
        print(f"error: out of GPU memory ({a.cmd}): {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as e:  # e.g. "No available kernel" when the forced SDPA backend cannot run
        print(f"error: {a.cmd} failed: {e}", file=sys.stderr)
        sys.exit(1)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
