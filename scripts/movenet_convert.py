"""The inner step of scripts/build_models.py, run by the build venv's Python (TensorFlow, tf2onnx).

TF.js graph model -> SavedModel (tfjs-graph-converter) -> TFLite (uint8 input; the shipped Lightning
INT8 with a seeded representative set) and ONNX (canonical node order and names, so that rebuilds
are byte-identical). Not imported by the product: build_models.py calls it with --inner.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from build_models import ONNX_OPSET, SAMPLES_PER_IMAGE, SEED, SIZE, run

def calibration_set(paths: list[Path]):
    """Deterministic uint8 [1,192,192,3] RGB samples: letterboxed views, crops and flips."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(SEED)
    samples = []

    def to_input(canvas: np.ndarray) -> np.ndarray:
        img = tf.image.resize(canvas[None].astype(np.float32), (SIZE, SIZE), method="bilinear")
        return np.clip(np.round(img.numpy()), 0, 255).astype(np.uint8)

    def crop(img: np.ndarray, cx: float, cy: float, side: int) -> np.ndarray:
        """Square crop centred at (cx, cy), zero-padded outside the image."""
        h, w = img.shape[:2]
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        canvas = np.zeros((side, side, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return canvas

    for path in paths:
        img = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).numpy()
        h, w = img.shape[:2]
        full = crop(img, w / 2, h / 2, max(h, w))  # letterboxed whole photo
        samples += [to_input(full), to_input(full[:, ::-1])]
        for _ in range(SAMPLES_PER_IMAGE):
            side = max(16, int(max(h, w) * rng.uniform(0.45, 1.3)))
            cx = w * rng.uniform(0.3, 0.7)
            cy = h * rng.uniform(0.3, 0.7)
            view = crop(img, cx, cy, side)
            if rng.rand() < 0.5:
                view = view[:, ::-1]
            samples.append(to_input(view))
    return samples


def inner(args: argparse.Namespace) -> int:
    import tensorflow as tf

    workdir = args.workdir
    saved = workdir / "savedmodel"
    if saved.exists():
        shutil.rmtree(saved)
    converter_cli = Path(sys.executable).parent / "tfjs_graph_converter"
    run([converter_cli, "--output_format", "tf_saved_model", "--compat_mode", "tflite",
         args.model_json, saved])

    model = tf.saved_model.load(str(saved))
    sig = model.signatures["serving_default"]
    (out_name,) = sig.structured_outputs.keys()

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8, name="input")])
    def serve(image):
        return sig(tf.cast(image, tf.int32))[out_name]

    samples = calibration_set(args.images)
    print(f"calibrating on {len(samples)} samples", flush=True)

    def representative_dataset():
        for s in samples:
            yield [s]

    tf.random.set_seed(SEED)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    tflite = conv.convert()
    args.out.write_bytes(tflite)
    return 0


def saved_model_of(workdir: Path, name: str, model_json: Path) -> Path:
    saved = workdir / f"savedmodel-{name}"
    if saved.exists():
        shutil.rmtree(saved)
    converter_cli = Path(sys.executable).parent / "tfjs_graph_converter"
    run([converter_cli, "--output_format", "tf_saved_model", "--compat_mode", "tflite", model_json, saved])
    return saved


def strip_shape_attrs(graph_def) -> int:
    """Remove _input_shapes/_output_shapes, which make tf2onnx fail on these graphs (tf2onnx issue 2259)."""
    removed = 0
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for node in nodes:
        for attr in ("_input_shapes", "_output_shapes"):
            if attr in node.attr:
                del node.attr[attr]
                removed += 1
    return removed


def to_onnx(concrete, out: Path) -> None:
    import numpy as np

    if not hasattr(np, "cast"):  # tf2onnx 1.16.1 still calls np.cast[...] (removed in numpy 2): same meaning
        class _Cast:
            def __getitem__(self, dtype):
                return lambda x: np.asarray(x, dtype=dtype)

        np.cast = _Cast()
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    print(f"  removed {strip_shape_attrs(graph_def)} shape attributes", flush=True)
    model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[t.name for t in frozen.inputs],
                                              output_names=[t.name for t in frozen.outputs], opset=ONNX_OPSET)
    out.write_bytes(canonical_names(model).SerializeToString())


def canonical_names(model):
    """tf2onnx numbers the names it makes (``const_fold_opt__462``) in an order that changes from run to run,
    and which of two equal nodes or constants survives deduplication varies too: the graph is the same, the
    names are not. Name every node by its place (keeping its TF scope, without numbers), every tensor after
    the node making it, every constant after its first user: two builds give the same bytes."""
    import re

    g = model.graph
    canonical_order(g)
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    numbers, names = re.compile(r"_\d+"), {}  # strided_slice_13 / strided_slice_14: same node, either name
    for k, node in enumerate(g.node):
        node.name = f"{numbers.sub('', node.name) or node.op_type}__{k}"
        for j, x in enumerate(node.output):
            if x and x not in keep:
                names[x] = f"{node.name}:{j}"
    consts = {i.name for i in g.initializer}
    for node in g.node:
        for j, x in enumerate(node.input):
            if x in consts and x not in names:
                names[x] = f"{node.name}/input_{j}"
    for node in g.node:
        node.input[:] = [names.get(x, x) for x in node.input]
        node.output[:] = [names.get(x, x) for x in node.output]
    for coll in (g.initializer, g.value_info):
        for item in coll:
            item.name = names.get(item.name, item.name)
    inits = sorted(g.initializer, key=lambda i: i.name)
    del g.initializer[:]
    g.initializer.extend(inits)
    return model


def canonical_order(g) -> None:
    """Sort the nodes topologically, ties broken by a hash of what each node computes (its op, attributes and
    the hashes of its inputs, names aside): tf2onnx lists independent branches in a varying order."""
    import hashlib

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the hashes recurse along the graph's depth

    def digest(*parts) -> str:
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    consts = {}
    for init in g.initializer:
        anonymous = type(init)()
        anonymous.CopyFrom(init)
        anonymous.name = ""
        consts[init.name] = hashlib.sha256(anonymous.SerializeToString()).hexdigest()
    producer = {out: node for node in g.node for out in node.output if out}
    memo: dict[str, str] = {}

    def tensor(name: str) -> str:
        if name not in memo:
            if name in consts:
                memo[name] = consts[name]
            elif name in producer:
                n = producer[name]
                memo[name] = digest(node_key(n), str(list(n.output).index(name)))
            else:
                memo[name] = digest("input", name)
        return memo[name]

    keys: dict[int, str] = {}

    def node_key(n) -> str:
        if id(n) not in keys:
            attrs = sorted(a.SerializeToString().hex() for a in n.attribute)
            keys[id(n)] = digest(n.op_type, n.domain, *attrs, *(tensor(x) if x else "" for x in n.input))
        return keys[id(n)]

    available = set(consts) | {i.name for i in g.input} | {""}
    pending, ordered = list(g.node), []
    while pending:
        ready = [n for n in pending if all(x in available for x in n.input)]
        n = min(ready, key=node_key)
        ordered.append(n)
        pending.remove(n)
        available.update(n.output)
    nodes = [type(n)() for n in ordered]
    for copy, n in zip(nodes, ordered):
        copy.CopyFrom(n)
    del g.node[:]
    g.node.extend(nodes)


def inner_zoo(args: argparse.Namespace) -> int:
    """Float TFLite and/or ONNX for each --spec name=model.json:size."""
    import tensorflow as tf

    formats = set(args.formats.split(","))
    for spec in args.spec:
        name, rest = spec.split("=", 1)
        model_json, size = rest.rsplit(":", 1)
        size = int(size)
        model = tf.saved_model.load(str(saved_model_of(args.workdir, name, Path(model_json))))
        sig = model.signatures["serving_default"]
        (out_name,) = sig.structured_outputs.keys()

        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name="input")])
        def serve(image, sig=sig, out_name=out_name):
            return sig(tf.cast(image, tf.int32))[out_name]

        concrete = serve.get_concrete_function()
        if "float" in formats:
            conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
            (args.zoo_out / f"movenet-{name}-float.tflite").write_bytes(conv.convert())
        if "onnx" in formats:
            to_onnx(concrete, args.zoo_out / f"movenet-{name}-float.onnx")
    return 0
