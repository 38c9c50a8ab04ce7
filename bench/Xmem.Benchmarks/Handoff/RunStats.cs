namespace Xmem.Benchmarks.Handoff;

/// <summary>Medians and spreads. Each run yields one median per metric; the report gives the median of the run
/// medians and their range (min–max), as the protocol asks.</summary>
internal static class RunStats
{
    internal static double Median(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty)
        {
            return double.NaN;
        }

        double[] copy = values.ToArray();
        Array.Sort(copy);
        int mid = copy.Length / 2;
        return copy.Length % 2 == 1 ? copy[mid] : (copy[mid - 1] + copy[mid]) / 2;
    }

    /// <summary>The <paramref name="q"/> quantile (0..1, nearest rank) of <paramref name="values"/>.</summary>
    internal static double Quantile(ReadOnlySpan<long> values, double q)
    {
        if (values.IsEmpty)
        {
            return double.NaN;
        }

        long[] copy = values.ToArray();
        Array.Sort(copy);
        int rank = (int)Math.Ceiling(q * copy.Length) - 1;
        return copy[Math.Clamp(rank, 0, copy.Length - 1)];
    }

    internal static double MedianNs(ReadOnlySpan<long> values)
    {
        var d = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            d[i] = values[i];
        }

        return Median(d);
    }
}

/// <summary>One metric's per-run values, in nanoseconds (or frames/s).</summary>
internal sealed class Metric(string name, string unit, double scale)
{
    private readonly List<double> _runs = [];

    internal string Name { get; } = name;

    internal void Add(double rawValue) => _runs.Add(rawValue);

    /// <summary>This metric as the peers' <c>RESULT</c> line (<see cref="ResultLine"/>), in <paramref name="resultUnit"/>
    /// (the peers write <c>us</c>, not <c>µs</c>); null when nothing was recorded.</summary>
    internal string? ResultLine(string resultName, string resultUnit) =>
        Handoff.ResultLine.Format(resultName, _runs.Select(v => v / scale).ToArray(), resultUnit);

    internal string Row()
    {
        if (_runs.Count == 0)
        {
            return $"| {Name} | – | – | {unit} |";
        }

        double med = RunStats.Median(_runs.ToArray()) / scale;
        double min = _runs.Min() / scale;
        double max = _runs.Max() / scale;
        return $"| {Name} | {Fmt(med)} | {Fmt(min)} – {Fmt(max)} | {unit} |";
    }

    private static string Fmt(double v) => v switch
    {
        >= 1000 => v.ToString("F0", System.Globalization.CultureInfo.InvariantCulture),
        >= 10 => v.ToString("F1", System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString("F2", System.Globalization.CultureInfo.InvariantCulture),
    };
}
