using Google.Protobuf;
using Onnx;

namespace PoolKernels.Benchmarks;

/// <summary>A small builder of ONNX models (through OnnxSharp's protobuf types) for the ONNX Runtime peers.</summary>
public sealed class OnnxGraph
{
    private readonly GraphProto _graph = new() { Name = "peer" };

    public OnnxGraph Input(string name, TensorProto.Types.DataType type, params long[] shape)
    {
        _graph.Input.Add(Value(name, type,
        shape)); return this;
    }
    public OnnxGraph Output(string name, TensorProto.Types.DataType type, params long[] shape)
    {
        _graph.Output.Add(Value(name, type,
        shape)); return this;
    }

    public OnnxGraph Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op, Name = $"{op}_{_graph.Node.Count}" };
        n.Input.AddRange(inputs); n.Output.AddRange(outputs); n.Attribute.AddRange(attributes);
        _graph.Node.Add(n);
        return this;
    }

    public OnnxGraph Constant(string name, long[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.AddRange(dims); t.Int64Data.AddRange(values);
        _graph.Initializer.Add(t);
        return this;
    }

    public OnnxGraph Constant(string name, float[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims); t.FloatData.AddRange(values);
        _graph.Initializer.Add(t);
        return this;
    }

    public static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };
    public static AttributeProto Ints(string name, params long[] v)
    {
        var a = new AttributeProto
        {
            Name = name,
            Type = AttributeProto.Types.AttributeType.Ints
        }; a.Ints.AddRange(v); return a;
    }
    public static AttributeProto Float(string name, float v) => new()
    {
        Name = name,
        Type = AttributeProto.Types.AttributeType.Float,
        F = v
    };

    public byte[] Build(int opset)
    {
        var m = new ModelProto { IrVersion = 10, Graph = _graph, ProducerName = "PoolKernels.Benchmarks" };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return m.ToByteArray();
    }

    private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, long[] shape)
    {
        var tt = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = new TensorShapeProto() };
        foreach (var d in shape) tt.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tt } };
    }
}
