"""Transformer fusions for the exported fp32 graph: ONNX Runtime's, plus MPNet's attention.

ONNX Runtime's optimizer (``model_type="bert"``) fuses BERT-style encoders such as MiniLM
completely (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). It fuses
MPNet's LayerNorms and GELUs but not its attention, because MPNet adds a relative position bias
to the scores before the mask; `fuse_biased_attention` rewrites those blocks into the same
``com.microsoft.Attention`` op with the bias as its ``attention_bias`` input (one packed QKV
GEMM instead of three, and an int8 QAttention later). Outputs are checked against PyTorch by
the caller (`onnx_export`), so a pattern that does not match simply stays unfused.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Graph:
    """Producer / consumer / constant look-ups over one ONNX graph."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def parent(self, node: Any, index: int, op_type: str) -> Any:
        found = self.producer.get(node.input[index]) if len(node.input) > index else None
        if found is None or found.op_type != op_type:
            raise LookupError(f"{node.name}: input {index} is not a {op_type}")
        return found

    def only_child(self, node: Any, op_type: str) -> Any:
        children = self.consumers.get(node.output[0], [])
        if len(children) != 1 or children[0].op_type != op_type:
            raise LookupError(f"{node.name}: not followed by one {op_type}")
        return children[0]

    def projection(self, transpose: Any) -> tuple[list[Any], str, np.ndarray, np.ndarray]:
        """(nodes, input, weight, bias) of one Q/K/V projection ending in ``transpose``."""
        reshape = self.parent(transpose, 0, "Reshape")
        add = self.parent(reshape, 0, "Add")
        for side in (0, 1):
            matmul = self.producer.get(add.input[side])
            if matmul is not None and matmul.op_type == "MatMul":
                weight = self.constants.get(matmul.input[1])
                bias = self.constants.get(add.input[1 - side])
                if weight is not None and bias is not None:
                    return [transpose, reshape, add, matmul], matmul.input[0], weight, bias
        raise LookupError(f"{add.name}: no constant MatMul + bias")


def _match(graph: _Graph, softmax: Any) -> tuple[list[Any], dict[str, Any]]:
    """The nodes of one biased attention block around ``softmax`` and what replaces them."""
    add_mask = graph.parent(softmax, 0, "Add")
    add_bias = graph.parent(add_mask, 0, "Add")
    div = graph.parent(add_bias, 0, "Div")
    scores = graph.parent(div, 0, "MatMul")
    context = graph.only_child(softmax, "MatMul")
    out_transpose = graph.only_child(context, "Transpose")
    out_reshape = graph.only_child(out_transpose, "Reshape")
    q_nodes, root, wq, bq = graph.projection(graph.parent(scores, 0, "Transpose"))
    k_nodes, k_root, wk, bk = graph.projection(graph.parent(scores, 1, "Transpose"))
    v_nodes, v_root, wv, bv = graph.projection(graph.parent(context, 1, "Transpose"))
    divisor = graph.constants.get(div.input[1])
    if k_root != root or v_root != root or divisor is None or divisor.size != 1:
        raise LookupError(f"{softmax.name}: Q, K and V do not share one input and a scale")
    nodes = [*q_nodes, *k_nodes, *v_nodes, scores, div, add_bias, add_mask, softmax, context,
             out_transpose, out_reshape]
    return nodes, {"root": root, "bias": add_bias.input[1], "scale": float(1 / divisor.item()),
                   "weight": np.concatenate([wq, wk, wv], axis=1),
                   "qkv_bias": np.concatenate([bq, bk, bv]), "output": out_reshape.output[0]}


def fuse_biased_attention(model: Any, num_heads: int, mask_input: str = "attention_mask") -> int:
    """Rewrite MPNet-style attention blocks of ``model`` in place; the number fused."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    graph = _Graph(model.graph)
    mask = f"{mask_input}_int32"
    removed: set[int] = set()
    added: list[Any] = []
    for index, softmax in enumerate(n for n in model.graph.node if n.op_type == "Softmax"):
        try:
            nodes, parts = _match(graph, softmax)
        except LookupError:
            continue
        removed.update(id(node) for node in nodes)
        name = f"BiasedAttention_{index}"
        model.graph.initializer.extend([
            numpy_helper.from_array(parts["weight"], f"{name}_qkv_weight"),
            numpy_helper.from_array(parts["qkv_bias"], f"{name}_qkv_bias"),
        ])
        added.append(helper.make_node(
            "Attention", [parts["root"], f"{name}_qkv_weight", f"{name}_qkv_bias", mask, "",
                          parts["bias"]], [parts["output"]], name=name,
            domain="com.microsoft", num_heads=num_heads, scale=parts["scale"]))
    if not added:
        return 0
    added.append(helper.make_node("Cast", [mask_input], [mask], to=TensorProto.INT32,
                                  name=f"{mask}_cast"))
    kept = [node for node in model.graph.node if id(node) not in removed]
    del model.graph.node[:]
    model.graph.node.extend(kept + added)
    fused = OnnxModel(model)
    fused.prune_graph()
    fused.topological_sort()
    return len(added) - 1


def optimize(source: str, target: str, num_heads: int, hidden_size: int, *,
             fuse_biased: bool = True) -> dict[str, int]:
    """ONNX Runtime's BERT fusions, then MPNet's attention (not with ``fuse_biased`` off, which
    benchmarks/bench_mpnet_qkv_int8.py uses to quantize MPNet's Q, K, V MatMuls); the fused-op
    counts, for the log."""
    import onnx
    from onnx import helper
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(source, model_type="bert", num_heads=num_heads,
                               hidden_size=hidden_size, opt_level=0, use_gpu=False)
    counts = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    model = optimized.model
    if not counts.get("Attention") and fuse_biased:
        counts["BiasedAttention"] = fuse_biased_attention(model, num_heads)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):  # contrib ops
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, target)
    return counts
