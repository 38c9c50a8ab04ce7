using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Xmem;
using Xmem.Examples.OnnxConsumer;

// Receives frames from an xmem channel and runs an ONNX model on each with ONNX Runtime, with the model's input an
// OrtValue over the received buffer's shared memory (no copy).
//
//     dotnet OnnxConsumer.dll POOL CHANNEL DEPTH MODEL.onnx COUNT
//
// Prints "ready" once it receives, then one JSON line per frame: {"seq":n,"output":[...],"zeroCopy":true}.
if (args.Length != 5)
{
    Console.Error.WriteLine("usage: OnnxConsumer POOL CHANNEL DEPTH MODEL.onnx COUNT");
    return 2;
}

int depth = int.Parse(args[2], CultureInfo.InvariantCulture);
int count = int.Parse(args[4], CultureInfo.InvariantCulture);
using var session = new InferenceSession(args[3]);
string input = session.InputMetadata.Keys.First();
string output = session.OutputMetadata.Keys.First();
using var runOptions = new RunOptions();
using BufferPool pool = BufferPool.Open(args[0]);
using BufferChannel frames = pool.Channel(args[1], depth);
Console.WriteLine("ready");
int n = 0;
await foreach (BufferGuard received in frames.ReadAllAsync())
{
    using GuardTensor frame = GuardTensor.Over(received); // the guard lives exactly as long as the OrtValue
    using IDisposableReadOnlyCollection<OrtValue> results = session.Run(runOptions, [input], [frame.Value], [output]);
    float[] values = results[0].GetTensorDataAsSpan<float>().ToArray();
    string outputs = string.Join(',', values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
    Console.WriteLine($"{{\"seq\":{frame.Seq},\"output\":[{outputs}],\"zeroCopy\":{(frame.ReadsGuardMemory ? "true" : "false")}}}");
    if (++n == count)
    {
        break;
    }
}

return 0;
