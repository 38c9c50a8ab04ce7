using BenchmarkDotNet.Running;
using Xmem.Benchmarks;
using Xmem.Benchmarks.Handoff;

// Modes (docs/benchmarks.md):
//   (BenchmarkDotNet arguments)          micro-benchmarks, e.g. --filter '*RefCount*'
//   handoff [options]                    producer → consumer handoff (benchmark-protocol.md), prints Markdown;
//                                        --transport channel|pipe (default channel), --reply channel|pipe
//   channel-latency [options]            channel send → receive latency, sleeping and spinning, and a 6 MiB
//                                        pipeline, beside the floors (issue 6 "Speed")
//   hot-loop OP N                        a plain loop for strace (scripts/strace-hot-loop.sh)
//   handoff-consumer ...                 hidden: the consumer process started by `handoff`
if (args.Length > 0)
{
    switch (args[0])
    {
        case "handoff":
            return HandoffProducer.Run(args);
        case "channel-latency":
            return ChannelLatency.Run(args);
        case "handoff-consumer":
            return HandoffConsumer.Run(args);
        case "hot-loop":
            return HotLoop.Run(args);
    }
}

bool userChoseJob = args.Any(a => a is "--job" or "-j" or "--inProcess" or "--runtimes" or "-r");
_ = BenchmarkSwitcher.FromAssembly(typeof(BenchConfig).Assembly).Run(args, BenchConfig.Create(userChoseJob));
return 0;
