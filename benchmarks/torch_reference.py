"""The baseline to beat: the paper's model written directly in PyTorch.

The public PyTorch implementation of "Learn To Pay Attention" is the
yardstick of this project's speed targets. This script rebuilds the same
network in plain PyTorch, no Keras (the layer structure of
`../shared/fixtures/torch_reference/README.md`: the CIFAR VGG with batch
norm, the 1x1 projector, three "pc" attention estimators before pooling, a
linear classifier on the concatenated pooled vectors; 19,855,434
parameters), and times it the way that implementation trains: NCHW
tensors, SGD with momentum and weight decay, optionally under
`torch.autocast("cpu", dtype=torch.bfloat16)`. Same batch, same number of
steps and the same JSON record as `throughput.py`, so the two can be put
side by side on the same machine at the same time.

Commands:

    python benchmarks/torch_reference.py --precision float32
    python benchmarks/torch_reference.py --precision bfloat16_autocast
    python benchmarks/torch_reference.py --precision float32 --channels-last
    python benchmarks/torch_reference.py --smoke

Writes `benchmarks/results/torch_reference_<precision>[_cl]_b<batch>.json`.
"""

import contextlib
import sys

import measure

BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512), (2, 512))


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--precision", choices=("float32", "bfloat16_autocast"),
                        default="float32")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC memory format (the reference uses NCHW).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 4, 1, 1
    return args


def build_reference(num_classes=10, width=1.0):
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
            self.dense = nn.Conv2d(channels, scaled(512), 1)
            self.projector = nn.Conv2d(scaled(256), scaled(512), 1, bias=False)
            self.attention = nn.ModuleList(Attention(scaled(512)) for _ in range(3))
            self.classify = nn.Linear(3 * scaled(512), num_classes)

        def forward(self, x):
            x = self.blocks[1](self.blocks[0](x))
            local_1 = self.blocks[2](x)
            local_2 = self.blocks[3](nn.functional.max_pool2d(local_1, 2))
            local_3 = self.blocks[4](nn.functional.max_pool2d(local_2, 2))
            x = self.blocks[5](nn.functional.max_pool2d(local_3, 2))
            g = self.dense(x)
            pooled = [
                attention(local, g)
                for attention, local in zip(
                    self.attention, (self.projector(local_1), local_2, local_3)
                )
            ]
            return self.classify(torch.cat(pooled, dim=1))

    return Network()


def torch_steps(width, batch_size, precision, device="cpu", channels_last=False):
    """(train_step, inference_step) of the reference network at one precision
    on `device` ("cpu" or "cuda"), trained as the public implementation
    trains (SGD, momentum 0.9, weight decay 5e-4, cross-entropy); each step
    blocks until its result is ready."""
    import torch

    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_reference(width=width).to(device, memory_format=memory_format)
    images = (torch.rand(batch_size, 3, 32, 32) * 255).to(device, memory_format=memory_format)
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
        return float(loss.detach())

    def inference():
        model.eval()
        with torch.inference_mode(), autocast():
            return model(images).float().cpu().numpy()

    return train, inference


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import torch

    width = measure.model_width(args)
    train_step, inference_step = torch_steps(
        width, args.batch_size, args.precision, channels_last=args.channels_last
    )
    result = {
        "benchmark": "torch_reference",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc (plain PyTorch)",
            "width_multiplier": width,
            "parameters": sum(p.numel() for p in build_reference(width=width).parameters()),
            "precision": args.precision,
            "channels_last": args.channels_last,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "torch_threads": torch.get_num_threads(),
        },
    }
    for mode, step in (("train", train_step), ("inference", inference_step)):
        timing = measure.time_steps(step, steps=args.steps, warmup=args.warmup)
        measure.add_rates(timing, args.batch_size)
        result[mode] = timing
    result["memory"] = measure.memory_record()
    print(f"torch reference {args.precision}{' channels_last' if args.channels_last else ''} "
          f"b={args.batch_size} | train {result['train']['images_per_second']:.2f} img/s | "
          f"inference {result['inference']['images_per_second']:.2f} img/s")
    name = f"torch_reference_{args.precision}" + ("_cl" if args.channels_last else "")
    name += f"_b{args.batch_size}"
    return measure.finish(
        result, name, args, load_at_start, backend="torch (plain PyTorch)"
    )


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
