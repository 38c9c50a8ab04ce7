using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// Create against Create (docs/layout.md, "Creation"): the name of a pool never points to a file that is not yet
/// locked by its creator, so a second creator never mistakes the first one's file for a stale pool. Exactly one Create
/// of a name wins; the other gets "already exists".
/// </summary>
public sealed class CreateRaceTests(ITestOutputHelper output) : PoolTest
{
    /// <summary>Two long-lived child processes race Create of one fresh name per round, released together by a
    /// barrier file they spin on; exactly one must win each round, a third process (this one) must open the pool the
    /// winner holds, and once the winner detaches nothing of either racer may remain.</summary>
    [Fact]
    public void Two_processes_racing_Create_of_one_name_have_exactly_one_winner_and_leak_nothing()
    {
        const int rounds = 300;
        string barrierDir = Directory.CreateTempSubdirectory("xmem-race-").FullName;
        int doubleWins = 0, noWins = 0;
        var failures = new List<string>();
        try
        {
            using TestChild a = TestChild.Start("race-create", barrierDir);
            using TestChild b = TestChild.Start("race-create", barrierDir);
            for (int round = 0; round < rounds; round++)
            {
                string name = NewName("race");
                a.Send($"race {name} {round}");
                b.Send($"race {name} {round}");
                _ = a.Expect("armed");
                _ = b.Expect("armed");
                File.WriteAllText(Path.Combine(barrierDir, round.ToString(System.Globalization.CultureInfo.InvariantCulture)), "");
                string ra = a.ReadLine(), rb = b.ReadLine();
                int wins = (ra == "won" ? 1 : 0) + (rb == "won" ? 1 : 0);
                if (ra is not ("won" or "exists") || rb is not ("won" or "exists"))
                {
                    failures.Add($"round {round}: answers '{ra}' and '{rb}'");
                }
                else if (wins == 2)
                {
                    doubleWins++;
                }
                else if (wins == 0)
                {
                    noWins++;
                }
                else
                {
                    try
                    {
                        using BufferPool third = BufferPool.Open(name); // the winner's pool, whole and reachable by name
                        Assert.Equal(4, third.Capacity);
                    }
                    catch (XmemException e)
                    {
                        failures.Add($"round {round}: a third process could not open the winner's pool: {e.Message}");
                    }
                }

                _ = a.AskOk("drop");
                _ = b.AskOk("drop");
                string[] left = Shm.EntriesOf(name);
                if (left.Length > 0)
                {
                    failures.Add($"round {round}: left {string.Join(", ", left)}");
                }
            }

            a.Send("exit");
            b.Send("exit");
            Assert.Equal(0, a.WaitForExit());
            Assert.Equal(0, b.WaitForExit());
        }
        finally
        {
            Directory.Delete(barrierDir, recursive: true);
        }

        output.WriteLine(RobustnessFigures.Record("createrace", ("rounds", rounds), ("double_wins", doubleWins), ("no_wins", noWins), ("other_failures", failures.Count)));
        Assert.True(doubleWins == 0 && noWins == 0 && failures.Count == 0,
            $"{rounds} rounds: {doubleWins} with two winners, {noWins} with none; {string.Join("; ", failures.Take(10))}");
    }
}
