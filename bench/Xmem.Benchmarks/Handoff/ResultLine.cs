using System.Globalization;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// The peers' machine-readable result line (../shared/peers/run.sh, its c/common.h and py/benchlib.py):
/// <c>RESULT &lt;name&gt; median=&lt;v&gt; min=&lt;v&gt; max=&lt;v&gt; unit=&lt;u&gt; n=&lt;runs&gt;</c>, so that one parser
/// (bench/compare.py) reads xmem's figures and every peer's alike. The median is taken as the peers take it
/// (nearest rank of the sorted per-run values), so an even number of runs gives the same pick on both sides.
/// </summary>
internal static class ResultLine
{
    /// <summary>One line for <paramref name="values"/> (already in <paramref name="unit"/>); none for no values.</summary>
    internal static string? Format(string name, IReadOnlyList<double> values, string unit)
    {
        if (values.Count == 0)
        {
            return null;
        }

        double[] sorted = [.. values];
        Array.Sort(sorted);
        double median = sorted[(int)((0.5 * (sorted.Length - 1)) + 0.5)];
        return string.Create(CultureInfo.InvariantCulture,
            $"RESULT {name,-44} median={median,-12:G4} min={sorted[0],-12:G4} max={sorted[^1],-12:G4} unit={unit} n={sorted.Length}");
    }
}
