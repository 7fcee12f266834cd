using System.Text;

namespace PoolKernels.Benchmarks;

/// <summary>
/// Writes small ONNX models (protobuf, by hand: a few message types of onnx.proto) so that ONNX Runtime can run the peer
/// of an operation in the same benchmark process without a model file or a protobuf dependency.
/// </summary>
internal static class OnnxProto
{
    public const int Float = 1, Bool = 9;

    /// <summary>An input or output: name, ONNX element type, shape.</summary>
    public readonly record struct Value(string Name, int ElemType, long[] Shape);

    /// <summary>An attribute: int or float.</summary>
    public readonly record struct Attr(string Name, long? I = null, float? F = null);

    /// <summary>One node.</summary>
    public readonly record struct Node(string OpType, string[] Inputs, string[] Outputs, Attr[] Attrs);

    /// <summary>A ModelProto holding one graph, for the default domain at <paramref name="opset"/>.</summary>
    public static byte[] Model(int opset, Value[] inputs, Value[] outputs, params Node[] nodes)
    {
        var graph = new Pb();
        foreach (var n in nodes)
        {
            var node = new Pb();
            foreach (var i in n.Inputs) node.Str(1, i);
            foreach (var o in n.Outputs) node.Str(2, o);
            node.Str(4, n.OpType);
            foreach (var a in n.Attrs)
            {
                var attr = new Pb().Str(1, a.Name);
                if (a.F is { } f) attr.Float(2, f).Int(20, 1);
                else attr.Int(3, a.I!.Value).Int(20, 2);
                node.Msg(5, attr);
            }
            graph.Msg(1, node);
        }
        graph.Str(2, "g");
        foreach (var v in inputs) graph.Msg(11, ValueInfo(v));
        foreach (var v in outputs) graph.Msg(12, ValueInfo(v));
        return new Pb().Int(1, 10).Str(2, "poolkernels-bench").Msg(7, graph).Msg(8, new Pb().Str(1, "").Int(2, opset)).ToArray();
    }

    private static Pb ValueInfo(Value v)
    {
        var shape = new Pb();
        foreach (var d in v.Shape) shape.Msg(1, new Pb().Int(1, d));
        return new Pb().Str(1, v.Name).Msg(2, new Pb().Msg(1, new Pb().Int(1, v.ElemType).Msg(2, shape)));
    }

    /// <summary>Minimal protobuf writer: varints, length-delimited fields, fixed32 floats.</summary>
    private sealed class Pb
    {
        private readonly MemoryStream _s = new();
        private void Varint(ulong x) { while (x >= 0x80) { _s.WriteByte((byte)(x | 0x80)); x >>= 7; } _s.WriteByte((byte)x); }
        private void Tag(int field, int wire) => Varint((ulong)(field << 3 | wire));
        public Pb Int(int field, long v) { Tag(field, 0); Varint((ulong)v); return this; }
        public Pb Float(int field, float v) { Tag(field, 5); _s.Write(BitConverter.GetBytes(v)); return this; }
        public Pb Bytes(int field, byte[] b) { Tag(field, 2); Varint((ulong)b.Length); _s.Write(b); return this; }
        public Pb Str(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));
        public Pb Msg(int field, Pb m) => Bytes(field, m.ToArray());
        public byte[] ToArray() => _s.ToArray();
    }
}
