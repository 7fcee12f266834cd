using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;
using Onnx;
using PoolKernels.Kernels.Spatial;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>
/// Spatial pooling on real CNN features from a model nobody here trained: ML.NET's ResNet-18 ONNX (package
/// Microsoft.ML.DnnImageFeaturizer.ResNet18). OnnxSharp adds the input of the graph's final AveragePool (the last
/// convolutional map, [1,512,7,7]) as an extra output; ONNX Runtime runs two generated images. spatial_pool avg must
/// reproduce the model's own pooled output, and GeM, R-GeM, SPP and mask pooling on the map must match the reference
/// on every backend.
/// </summary>
public class ResNetFeaturesTests
{
    private static readonly Lazy<(HostTensor Map, float[] Pooled, int[] Kernel)> Features = new(Run);

    private static (HostTensor Map, float[] Pooled, int[] Kernel) Run()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "models", "ResNet18.onnx");
        var model = ModelProto.Parser.ParseFromFile(path);
        var graph = model.Graph;
        var pool = graph.Node.Last(n => n.OpType == "AveragePool");
        Assert.That(graph.Output.Select(o => o.Name), Does.Contain(pool.Output[0]), "the model ends in its global AveragePool");
        var kernel = pool.Attribute.First(a => a.Name == "kernel_shape").Ints.Select(v => (int)v).ToArray();
        string mapName = pool.Input[0];
        graph.Output.Add(new ValueInfoProto
        {
            Name = mapName,
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor
                {
                    ElemType
            = (int)TensorProto.Types.DataType.Float
                }
            }
        });
        using var session = new InferenceSession(model.ToByteArray());
        string input = session.InputMetadata.Keys.Single();
        var maps = new List<float>();
        var pooled = new List<float>();
        int[] mapShape = [];
        for (int img = 0; img < 2; img++)
        {
            // a generated 224×224 RGB image: smooth colour gradients, a few bright discs, a little noise
            var rng = new Random(42 + img);
            var x = new DenseTensor<float>([1, 3, 224, 224]);
            for (int c = 0; c < 3; c++)
                for (int h = 0; h < 224; h++)
                    for (int w = 0; w < 224; w++)
                    {
                        double v = 0.5 + 0.4 * Math.Sin((h * (c + 1) + w * (img + 2)) / 23.0);
                        for (int k = 0; k < 3; k++)
                        {
                            double cy = 40 + 70 * k + 11 * img, cx = 190 - 60 * k, r2 = (h - cy) * (h - cy) + (w - cx) * (w - cx);
                            if (r2 < 400) v += 0.6;
                        }
                        x[0, c, h, w] = (float)((v + 0.05 * rng.NextDouble()) * 255 - 110);
                    }
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(input, x)], [mapName, pool.Output[0]]);
            var map = results.First(r => r.Name == mapName).AsTensor<float>();
            mapShape = map.Dimensions.ToArray();
            maps.AddRange(map.ToArray());
            pooled.AddRange(results.First(r => r.Name == pool.Output[0]).AsTensor<float>().ToArray());
        }
        Assert.That(mapShape, Is.EqualTo(new[] { 1, 512, 7, 7 }));
        return (HostTensor.From(maps.ToArray(), 2, 512, 7, 7), pooled.ToArray(), kernel);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolAvgReproducesTheModelsPooledOutput(string id)
    {
        var (map, pooled, kernel) = Features.Value;
        Assert.That(kernel, Is.EqualTo(new[] { 7, 7 }), "the pool covers the whole 7×7 map");
        var ours = TestDevices.Get(id).SpatialPool(map, new() { Mode = SpatialPoolMode.Avg });
        var c = Compare.Values(ours.ToDoubles(), pooled.Select(v => (double)v).ToArray(), 1e-4, 1e-5);
        Assert.That(c.Pass, Is.True, c.Message);
        Assert.That(pooled.Count(v => v > 0), Is.GreaterThan(100), "real features: many active channels");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void GemRegionalGemSppAndMaskPoolMatchTheReferenceOnRealFeatures(string id)
    {
        var map = Features.Value.Map;
        var d = TestDevices.Get(id);
        var reference = TestDevices.Get("reference");
        var masks = new RandomTensors(7).Floats(DType.F32, -1, 1, 2, 5, 14, 14); // 5 mask logits per image at 2× resolution
        var ops = new (string Name, Func<Device, HostTensor> Run)[]
        {
            ("gem p=3 normalize", dev => dev.SpatialPool(map, new() { Mode = SpatialPoolMode.Gem, P = 3, Normalize = true })),
            ("gem p=4.6", dev => dev.SpatialPool(map, new() { Mode = SpatialPoolMode.Gem, P = 4.6f })),
            ("regional_gem", dev => dev.RegionalGem(map, 2.5f, 5)),
            ("spp 1,2,4", dev => dev.Spp(map, [1, 2, 4])),
            ("mask_pool binary_logits", dev => dev.MaskPool(map, masks, MaskType.BinaryLogits)),
            ("mask_pool sigmoid_normalized", dev => dev.MaskPool(map, masks, MaskType.SigmoidNormalized, 0.5f, 0)),
        };
        foreach (var (name, run) in ops)
        {
            var c = Compare.Tensors(run(d), run(reference), 1e-4, 1e-5, name);
            Assert.That(c.Pass, Is.True, $"{name}: {c.Message}");
        }
    }
}
