using System.Diagnostics;
using System.Globalization;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Tests.CrossProcess;

/// <summary>
/// Pools shared with mode 0660 between users whose primary groups differ (docs/layout.md, "Object names" and
/// "Permissions"): every segment gets the control segment's group and mode whoever makes it, the header's Mode field is
/// never trusted, names pre-created by a user without access never lock the pool's users out, and a removal that
/// cannot unlink is reported. The children run as real other users (scripts/create-test-users.sh): member A
/// (primary group xmemtest-pool, the pool's group, when it creates the pool), member B (primary group xmemtest-b,
/// xmemtest-pool only as a supplementary group), and an outsider in neither group.
/// </summary>
public sealed class PermissionTests : PoolTest
{
    private const int Mode0660 = 0x1B0;

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    private static (string Guard, int Index) GuardAndIndex(string answer)
    {
        string[] w = answer.Split(' ');
        return (w[0], Int(w[1]));
    }

    /// <summary>Starts member A creating a 0660 pool with the pool's group as its primary group.</summary>
    private static TestChild CreateAsMemberA(string name, int capacity) =>
        TestChild.Start("session", ["--create", name, capacity.ToString(CultureInfo.InvariantCulture), "660"], runAsUser: Users.MemberA, runAsGroup: Users.PoolGroup);

    private static string PathOf(string file) => Path.Combine(Shm.Directory, file);

    /// <summary>Root's clean-up of what members left that only their owner (or root) may unlink in a sticky /dev/shm.</summary>
    private static void RemoveLeftovers(string name)
    {
        foreach (string f in Shm.EntriesOf(name))
        {
            File.Delete(PathOf(f));
        }
    }

    [RootFact]
    public void Segments_made_by_a_member_with_another_primary_group_get_the_pools_group_and_mode()
    {
        Users.EnsurePermissionUsers();
        string name = NewName("grp");
        uint poolGid = Users.GroupId(Users.PoolGroup);
        try
        {
            using TestChild a = CreateAsMemberA(name, 4);
            a.Expect("ready");
            using TestChild b = TestChild.Start("session", [name], runAsUser: Users.MemberB);
            int bPid = Int(b.Expect("ready"));
            (string bg, int index) = GuardAndIndex(b.AskOk("acquire 8192"));
            b.AskOk($"fill {bg} 31");
            b.AskOk("channel frames");

            // Every segment, whoever made it: the control segment's group and mode, exactly.
            string[] files = Shm.EntriesOf(name);
            Assert.Contains(files, f => f.EndsWith(".p1", StringComparison.Ordinal)); // B's holdings
            Assert.Contains(files, f => f.EndsWith(".cframes", StringComparison.Ordinal));
            Assert.Single(Shm.DataSegmentsOf(name));
            foreach (string f in files)
            {
                (uint _, uint gid, uint mode) = Users.StatOf(PathOf(f));
                Assert.True(gid == poolGid && mode == Mode0660, $"{f}: group {gid}, mode {Convert.ToString(mode, 8)}; every segment must have the pool's group {poolGid} and mode 660");
            }

            // A can use the memory B made ...
            string ag = a.AskOk($"get {index}");
            Assert.Equal("ok", a.Ask($"verify {ag} 31"));
            a.AskOk($"dispose {ag}");

            // ... and recover B's holdings when B is killed holding the buffer.
            Process.GetProcessById(bPid).Kill();
            b.WaitForExit();
            Assert.Equal("ok 1", a.Ask("recover"));
            Assert.Equal("ok 0", a.Ask($"refcount {index}"));
            (string again, int j) = GuardAndIndex(a.AskOk("acquire 8192"));
            Assert.Equal(index, j); // the slot came back
            a.AskOk($"dispose {again}");
            a.AskOk("exit");
            Assert.Equal(0, a.WaitForExit());

            // A removed the pool as its last process; what B made, only B or root may unlink in a sticky directory.
            foreach (string f in Shm.EntriesOf(name))
            {
                Assert.Equal(Users.UserId(Users.MemberB), Users.StatOf(PathOf(f)).Uid);
            }
        }
        finally
        {
            RemoveLeftovers(name);
        }
    }

    [RootFact]
    public void A_removal_that_cannot_unlink_a_members_segment_is_reported()
    {
        Users.EnsurePermissionUsers();
        string name = NewName("rmrep");
        try
        {
            using TestChild a = CreateAsMemberA(name, 2);
            a.Expect("ready");
            using (TestChild b = TestChild.Start("session", [name], runAsUser: Users.MemberB))
            {
                b.Expect("ready");
                (string g, int _) = GuardAndIndex(b.AskOk("acquire 4096"));
                b.AskOk($"dispose {g}"); // the slot keeps B's data segment for the next acquire
                b.AskOk("exit");
                Assert.Equal(0, b.WaitForExit());
            }

            string data = Assert.Single(Shm.DataSegmentsOf(name));
            string answer = a.Ask("remove");
            Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", answer);
            Assert.Contains(data, answer);
            Assert.Contains("xmem gc", answer);
            Assert.Equal([data], Shm.EntriesOf(name)); // everything else went
            a.AskOk("exit");
            Assert.Equal(0, a.WaitForExit());
        }
        finally
        {
            RemoveLeftovers(name);
        }
    }

    [RootFact]
    public void Names_precreated_by_a_user_without_access_do_not_lock_the_pools_users_out()
    {
        Users.EnsurePermissionUsers();
        string name = NewName("squat");
        var squatted = new List<string>();
        try
        {
            using TestChild a = CreateAsMemberA(name, 2);
            a.Expect("ready");

            // The outsider sees the instance in /dev/shm and takes the next names: slot 0's next two data segments,
            // the next two process entries' holdings and a channel.
            string prefix = SegmentNames.InstancePrefix(name, Shm.ReadControl(name, 32, 8)); // PoolHeader.InstanceId
            foreach (string n in new[] { "s0.g1", "s0.g2", "p1", "p2", "cframes" })
            {
                squatted.Add(prefix + n);
                Users.TouchAs(Users.Outsider, PathOf(prefix + n));
            }

            (string ag, int index) = GuardAndIndex(a.AskOk("acquire 4096"));
            Assert.Equal(0, index);
            a.AskOk($"fill {ag} 5");
            Assert.Equal([prefix + "s0.g3"], Shm.DataSegmentsOf(name).Except(squatted));

            using TestChild b = TestChild.Start("session", [name], runAsUser: Users.MemberB);
            b.Expect("ready");
            string bg = b.AskOk($"get {index}");
            Assert.Equal("ok", b.Ask($"verify {bg} 5"));
            b.AskOk($"dispose {bg}");
            Assert.Contains(prefix + "p3", Shm.EntriesOf(name)); // B took the first entry whose name was free

            // A channel's name is the application's: there is no other to fall back on, so it is refused with
            // what to do, never used.
            string channel = b.Ask("channel frames");
            Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", channel);
            Assert.Contains("outside the pool's group", channel);

            b.AskOk("exit");
            Assert.Equal(0, b.WaitForExit());
            a.AskOk($"dispose {ag}");
            a.AskOk("exit");
            Assert.Equal(0, a.WaitForExit());

            // The pool went with its last process; the outsider's files were neither used nor removed.
            Assert.Equal(squatted.Order(StringComparer.Ordinal), Shm.EntriesOf(name));
            uint outsider = Users.UserId(Users.Outsider);
            Assert.All(squatted, f => Assert.Equal(outsider, Users.StatOf(PathOf(f)).Uid));
        }
        finally
        {
            RemoveLeftovers(name);
        }
    }

    [RootFact]
    public void A_process_that_cannot_give_a_segment_the_pools_group_fails_and_leaves_nothing()
    {
        Users.EnsurePermissionUsers();
        string name = NewName("chgrp");
        try
        {
            using TestChild a = CreateAsMemberA(name, 2);
            a.Expect("ready");

            // The administrator gives the pool to B's own group, which A is not in; A still opens it as its owner.
            string control = PathOf(LayoutConstants.ObjectPrefix + name);
            using (Process chgrp = Process.Start("chgrp", [Users.MemberB, control])!)
            {
                Assert.True(chgrp.WaitForExit(60_000), "chgrp did not finish within 60 s (watchdog)");
            }
            Assert.Equal(Users.GroupId(Users.MemberB), Users.StatOf(control).Gid);
            string[] before = Shm.EntriesOf(name);

            using TestChild second = TestChild.Start("open", [name], runAsUser: Users.MemberA);
            string answer = second.ReadLine();
            Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", answer);
            Assert.Contains("not a member of the group", answer);
            Assert.NotEqual(0, second.WaitForExit());
            Assert.Equal(before, Shm.EntriesOf(name)); // the half-made holdings segment went again

            a.AskOk("exit");
            Assert.Equal(0, a.WaitForExit());
        }
        finally
        {
            RemoveLeftovers(name);
        }
    }

    [Fact]
    public void Inspection_shows_the_kernels_mode_never_the_headers_mode_field()
    {
        using BufferPool pool = NewPool(2, mode: 0x180);
        using (var file = new FileStream(PathOf(LayoutConstants.ObjectPrefix + pool.Name), FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = 76; // PoolHeader.Mode, which every member can write
            file.Write(BitConverter.GetBytes(0x1B6u)); // 0666
        }

        Assert.Equal(0x180, Xmem.Inspection.PoolInspector.Summarize(pool.Name).Mode);
    }

    [Fact]
    public unsafe void The_headers_mode_field_is_never_trusted_for_new_segments()
    {
        using BufferPool pool = NewPool(2, mode: 0x180);
        string control = PathOf(LayoutConstants.ObjectPrefix + pool.Name);

        // A member who can write the control segment writes 06777 into the header's Mode field.
        using (var file = new FileStream(control, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = 76; // PoolHeader.Mode
            file.Write(BitConverter.GetBytes(0xFFFu)); // 07777
        }

        using (BufferGuard g = pool.AcquireCpu(4096))
        using (BufferChannel ch = pool.Channel("frames", depth: 8))
        using (BufferPool second = BufferPool.Open(pool.Name))
        {
            foreach (string f in Shm.EntriesOf(pool.Name))
            {
                Assert.True(Users.StatOf(PathOf(f)).Mode == 0x180, $"{f} has mode {Convert.ToString(Users.StatOf(PathOf(f)).Mode, 8)}; every segment must have the control segment's mode 600");
            }
        }
    }
}
