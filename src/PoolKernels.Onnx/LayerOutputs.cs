using System.Text.RegularExpressions;
using Google.Protobuf;
using Onnx;

namespace PoolKernels.Onnx;

/// <summary>
/// Exposes every layer's hidden states of a BERT-style ONNX encoder as extra graph outputs (OnnxSharp edits the
/// protobuf): output 0 is the embeddings' LayerNorm, output i the i-th encoder layer's final LayerNorm — what
/// HuggingFace returns as <c>hidden_states</c> with <c>output_hidden_states=True</c>.
/// </summary>
public static partial class LayerOutputs
{
    [GeneratedRegex(@"^(?:.*\.)?(embeddings|encoder\.layer\.(\d+)\.output)\.LayerNorm\.bias$")]
    private static partial Regex LayerNormBias();

    /// <summary>Returns the edited model and the names of its hidden-state outputs in layer order.</summary>
    /// <exception cref="ArgumentException">No per-layer LayerNorm was recognized.</exception>
    public static (byte[] Model, string[] Outputs) Expose(byte[] model)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        var found = new SortedDictionary<int, string>();
        foreach (var node in proto.Graph.Node)
        {
            if (node.OpType is not ("Add" or "LayerNormalization")) continue;
            foreach (var input in node.Input)
            {
                var m = LayerNormBias().Match(input);
                if (!m.Success) continue;
                int layer = m.Groups[2].Success ? int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) + 1 : 0;
                found[layer] = node.Output[0];
            }
        }
        if (found.Count < 2 || found.Keys.Last() != found.Count - 1)
            throw new ArgumentException("model: could not find the embeddings and encoder.layer.N.output LayerNorm nodes of a BERT-style "
                + "encoder.", nameof(model));
        var existing = proto.Graph.Output.Select(o => o.Name).ToHashSet();
        foreach (var name in found.Values.Where(n => !existing.Contains(n)))
        {
            var tensor = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() };
            foreach (var dim in new[] { "batch", "sequence",
                "hidden" }) tensor.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = dim });
            proto.Graph.Output.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } });
        }
        return (proto.ToByteArray(), found.Values.ToArray());
    }
}
