"""Keras against the plain PyTorch reference: training and inference, side by side.

The speed targets are ratios to the paper's network written directly in
PyTorch (`build_reference`: the CIFAR VGG with batch norm, the 1x1
projector, three "pc" attention estimators before pooling, a linear
classifier on the concatenated pooled vectors; 19,855,434 parameters at full
width, as in the public implementation), trained as that implementation
trains (NCHW, SGD with momentum 0.9 and weight decay 5e-4), in float32 or
under bfloat16 autocast. Against it: the Keras model as `training/fit.py`
compiles it (`measure.training_model`) on the current backend, in each
precision of `--precision` (`auto`: what `--precision auto` picks here for
training, and for inference where that differs; the first gives the file's
headline ratio).

Each configuration runs in a worker process of its own (two frameworks in
one process slow each other with their spinning thread pools); this script
times their steps (training: forward, backward, SGD update; inference) in
interleaved rounds, so a busy machine slows all alike, and takes each Keras
configuration's ratio against the fastest PyTorch precision of each round:

    ratio = median over rounds of min(PyTorch step times) / Keras step time

Targets: training >= 1.1, inference >= 1.2. The file name carries a CPU tag,
so results from several machine kinds sit side by side. Commands:

    KERAS_BACKEND=tensorflow python benchmarks/versus_torch.py
    KERAS_BACKEND=tensorflow python benchmarks/versus_torch.py --width 0.25 \\
        --batch-size 128 --precision auto,float32,mixed_bfloat16
    KERAS_BACKEND=jax python benchmarks/versus_torch.py --image-size 64 --batch-size 8
    KERAS_BACKEND=tensorflow python benchmarks/versus_torch.py --smoke

Writes `benchmarks/results/versus_torch_<backend>_w<width>_b<batch>[_s<size>]
[_<precision>][_jit-<on|off>]_<cpu>.json` (a precision only where the first
listed is not what `auto` picks).
"""

import contextlib
import statistics
import sys

import measure

KERAS_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TORCH_PRECISIONS = ("float32", "bfloat16_autocast")
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512), (2, 512))


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--width", type=measure.positive(float), default=1.0,
                        help="width multiplier of every convolution (default 1: the paper's)")
    parser.add_argument("--batch-size", type=measure.positive(int), default=32)
    parser.add_argument("--image-size", type=measure.positive(int), default=32,
                        help="side of the square input, at least 32 (five 2x2 poolings)")
    parser.add_argument("--precision", default="auto",
                        help="Keras dtype policies, comma-separated, one worker each: "
                        + ", ".join(KERAS_PRECISIONS))
    parser.add_argument("--torch-precisions", default=",".join(TORCH_PRECISIONS),
                        help="comma-separated: " + ", ".join(TORCH_PRECISIONS))
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                        help="XLA (TensorFlow, JAX) or torch.compile; auto: fit.py's choice")
    parser.add_argument("--mode", choices=("both", "train", "inference"), default="both")
    parser.add_argument("--rounds", type=measure.positive(int), default=6)
    parser.add_argument("--warmup", type=measure.positive(int), default=2)
    args = parser.parse_args(argv)
    args.precision = measure.comma_list(parser, "--precision", args.precision, KERAS_PRECISIONS)
    args.torch_precisions = measure.comma_list(
        parser, "--torch-precisions", args.torch_precisions, TORCH_PRECISIONS)
    if args.image_size < 32:
        parser.error(f"--image-size must be at least 32; received {args.image_size}")
    if args.smoke:
        args.width, args.batch_size, args.rounds, args.warmup = measure.SMOKE_WIDTH, 4, 2, 1
    return args


def build_reference(num_classes=10, width=1.0, image_size=32):
    """The paper's att3-concat-pc network (before pooling, softmax) in PyTorch."""
    import torch
    from torch import nn

    def scaled(channels):
        return max(1, int(round(channels * width)))

    class Attention(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.score = nn.Conv2d(channels, 1, 1, bias=False)  # c = <u, l + g>

        def forward(self, local, global_):
            n, c, h, w = local.shape
            scores = self.score(local + global_)
            attention = torch.softmax(scores.view(n, 1, -1), dim=2).view(n, 1, h, w)
            return (attention * local).view(n, c, -1).sum(dim=2)

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList()
            channels = 3
            for convs, filters in BLOCKS:
                layers = []
                for _ in range(convs):
                    layers += [nn.Conv2d(channels, scaled(filters), 3, padding=1),
                               nn.BatchNorm2d(scaled(filters)), nn.ReLU(inplace=True)]
                    channels = scaled(filters)
                    if len(self.blocks) == 5:  # block 6 pools after each conv
                        layers.append(nn.MaxPool2d(2))
                self.blocks.append(nn.Sequential(*layers))
            # The paper's "dense" layer: a kernel over the whole remaining map.
            self.dense = nn.Conv2d(channels, scaled(512), image_size // 32)
            self.projector = nn.Conv2d(scaled(256), scaled(512), 1, bias=False)
            self.attention = nn.ModuleList(Attention(scaled(512)) for _ in range(3))
            self.classify = nn.Linear(3 * scaled(512), num_classes)

        def forward(self, x):
            x = self.blocks[1](self.blocks[0](x))
            local_1 = self.blocks[2](x)
            local_2 = self.blocks[3](nn.functional.max_pool2d(local_1, 2))
            local_3 = self.blocks[4](nn.functional.max_pool2d(local_2, 2))
            g = self.dense(self.blocks[5](nn.functional.max_pool2d(local_3, 2)))
            pooled = [attention(local, g) for attention, local in
                      zip(self.attention, (self.projector(local_1), local_2, local_3))]
            return self.classify(torch.cat(pooled, dim=1))

    return Network()


def torch_steps(width, batch_size, image_size, precision, device="cpu"):
    """The reference network's steps at one precision on `device` ("cpu" or
    "cuda"), trained as the public implementation trains, and a JSON-ready
    record; each step blocks until its result is ready (a StepWorker builder)."""
    import torch

    torch.manual_seed(0)
    model = build_reference(width=width, image_size=image_size).to(device)
    images = (torch.rand(batch_size, 3, image_size, image_size) * 255).to(device)
    labels = torch.randint(0, 10, (batch_size,)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_function = torch.nn.CrossEntropyLoss()

    def autocast():
        if precision == "bfloat16_autocast":
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())  # waits for the step

    def inference():
        model.eval()
        with torch.inference_mode(), autocast():
            return model(images).float().cpu().numpy()

    return {"train": train, "inference": inference}, {
        "label": f"torch {precision}", "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters())}


def keras_steps(width, batch_size, image_size, precision, jit_compile):
    """A worker's Keras steps: the model as `training/fit.py` compiles it."""
    import keras

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = measure.training_model(image_size, width, jit_compile)
    images, labels = measure.random_batch(batch_size, image_size)
    steps = {"train": lambda: model.train_on_batch(images, labels),
             "inference": lambda: model.predict_on_batch(images)}
    return steps, {
        "label": f"keras {keras.backend.backend()} {precision}", "precision": precision,
        "jit_compile": bool(model.jit_compile), "cpu_kernels": measure.cpu_kernels.describe(),
        "forward_gflops_per_image": measure.forward_flops(model)["total"] / 1e9}


def compare(workers, mode, args):
    """One mode's warm-up and interleaved rounds; the result entry."""
    calls = {worker.info["label"]: worker.step(mode) for worker in workers}
    warmup = {label: measure.time_steps(call, 0, args.warmup)["warmup_seconds"]
              for label, call in calls.items()}  # tracing, compilation, allocators
    times = measure.interleaved_rounds(calls, args.rounds)
    torch_labels = [label for label in calls if label.startswith("torch")]
    keras_labels = [label for label in calls if label.startswith("keras")]
    rates = {label: args.batch_size / statistics.median(t) for label, t in times.items()}
    ratios = {label: measure.round_ratios(times, label, torch_labels) for label in keras_labels}
    return {"images_per_second": rates, "step_seconds": times, "warmup_seconds": warmup,
            "torch_best": max(torch_labels, key=rates.get),
            "ratio_to_torch_best": ratios[keras_labels[0]], "ratios_to_torch_best": ratios}


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    import keras

    from keras_ltpa.devices import choose_precision

    backend = keras.backend.backend()
    auto = [choose_precision("auto", purpose=purpose) for purpose in ("training", "inference")]
    policies = list(dict.fromkeys(q for p in args.precision for q in (auto if p == "auto" else [p])))
    sizes = {"width": args.width, "batch_size": args.batch_size, "image_size": args.image_size}
    workers = [measure.StepWorker(  # one process per configuration, driven from here
        "versus_torch:keras_steps", dict(sizes, precision=p, jit_compile=args.jit_compile),
        env={"KERAS_BACKEND": backend}) for p in policies]
    workers += [measure.StepWorker("versus_torch:torch_steps", dict(sizes, precision=p),
                                   env={"KERAS_BACKEND": "torch"})
                for p in args.torch_precisions]
    result = {"benchmark": "versus_torch", "smoke": args.smoke, "settings": {
        "model": "att3-concat-pc", "width_multiplier": args.width, "batch_size": args.batch_size,
        "image_size": args.image_size, "rounds": args.rounds, "warmup": args.warmup,
        "keras_precision": policies[0], "keras_precisions": policies,
        "keras_jit_compile": workers[0].info["jit_compile"],
        "torch_precisions": args.torch_precisions,
        "forward_gflops_per_image": workers[0].info["forward_gflops_per_image"],
        "processes": "one per framework configuration, steps interleaved by the parent"},
        "workers": {worker.info["label"]: worker.info for worker in workers},
        "targets": {"train": 1.1, "inference": 1.2}}
    for mode in ("train", "inference") if args.mode == "both" else (args.mode,):
        entry = result[mode] = compare(workers, mode, args)
        print(f"{mode}: img/s {entry['images_per_second']}; ratio to PyTorch's best "
              f"{entry['ratios_to_torch_best']} (target {result['targets'][mode]})")
    for worker in workers:
        worker.info["peak_rss_mib"] = worker.close()
    name = f"versus_torch_{backend}_w{args.width:g}_b{args.batch_size}"
    name += f"_s{args.image_size}" if args.image_size != 32 else ""
    name += f"_{policies[0]}" if policies[0] != auto[0] else ""
    name += f"_jit-{args.jit_compile}" if args.jit_compile != "auto" else ""
    return measure.finish(result, f"{name}_{measure.cpu_tag()}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
