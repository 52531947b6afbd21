using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Connection groups across three silos: members' sockets on every gateway, their grains on other silos than their
/// sockets, senders in grains and in an external client. The gateways deliver; the members' grains are not called.
/// </summary>
[Collection(ThreeSiloCollection.Name)]
public sealed class GroupTests(ThreeSiloFixture fixture)
{
    /// <summary>The "group" listener's MaxGroupBacklog in these tests.</summary>
    public const long Backlog = 256 * 1024;

    [Fact]
    public async Task Every_member_on_three_gateways_gets_every_message_of_an_external_sender_once_and_in_order()
    {
        var group = NewGroup();
        var members = new List<(TestClient Client, string Id)>();
        for (var i = 0; i < 6; i++)
        {
            members.Add(await MemberAsync(i % 3, group));
        }

        var client = fixture.Cluster.Client;
        Assert.Equal(6, await client.GetGroup(group).Count());
        Assert.Equal(members.Select(m => m.Id).Order(), (await fixture.Grains(2).GetGroup(group).List()).Order());
        Assert.Equal(6, (await client.ListGroupsAsync())[group]);

        for (var n = 0; n < 300; n++)
        {
            var result = await client.GetGroup(group).Send(Encoding.UTF8.GetBytes($"m {n}\n"));
            Assert.Equal(new GroupSendResult(6, 0, 0), result);
        }

        await Task.WhenAll(members.Select(async m =>
        {
            for (var n = 0; n < 300; n++)
            {
                Assert.Equal($"m {n}", await m.Client.ReadLineAsync());
            }
        }));

        await DisposeAllAsync(members);
        await Poll.UntilAsync(async () => await client.GetGroup(group).Count() == 0, () => "closed members are still in the group");
        Assert.False((await client.ListGroupsAsync()).ContainsKey(group));
    }

    [Fact]
    public async Task Posted_messages_mixed_with_sent_ones_reach_every_member_on_three_gateways_once_and_in_order()
    {
        var group = NewGroup();
        var members = new List<(TestClient Client, string Id)>();
        for (var i = 0; i < 6; i++)
        {
            members.Add(await MemberAsync(i % 3, group));
        }

        // A post waits for the members on the sender's silo only (two of six, a pair per silo); the other silos get it
        // numbered and put it back in order, so the posts and the sends between them arrive as they were made.
        var sender = fixture.Cluster.Client.GetGroup(group);
        const int Messages = 600;
        for (var n = 0; n < Messages; n++)
        {
            var data = Encoding.UTF8.GetBytes($"m {n}\n");
            if (n % 10 == 9)
            {
                Assert.Equal(new GroupSendResult(6, 0, 0), await sender.Send(data));
            }
            else
            {
                Assert.Equal(new GroupSendResult(2, 0, 0), await sender.Post(data));
            }
        }

        await Task.WhenAll(members.Select(async m =>
        {
            for (var n = 0; n < Messages; n++)
            {
                Assert.Equal($"m {n}", await m.Client.ReadLineAsync());
            }
        }));

        await DisposeAllAsync(members);
    }

    [Fact]
    public async Task A_burst_of_posts_eight_times_the_lanes_window_loses_none_and_every_member_gets_every_one()
    {
        var group = NewGroup();
        var members = new List<(TestClient Client, string Id)>();
        for (var i = 0; i < 3; i++)
        {
            members.Add(await MemberAsync(i, group));
        }

        // A well-behaved sender past the window: 2,048 posts at once against 256 in flight per silo; a post waits for room, none is dropped.
        var sender = fixture.Cluster.Client.GetGroup(group);
        const int Posts = 8 * OrleansProtocol.Wire.GroupLanes.Window;
        await Task.WhenAll(Enumerable.Range(0, Posts).Select(n => sender.Post(Encoding.UTF8.GetBytes($"p {n}\n"))));

        await Task.WhenAll(members.Select(async m =>
        {
            var heard = new HashSet<string>();
            for (var n = 0; n < Posts; n++)
            {
                Assert.True(heard.Add(await m.Client.ReadLineAsync()));
            }

            Assert.Equal(Enumerable.Range(0, Posts).Select(n => $"p {n}").Order(), heard.Order());
        }));

        await DisposeAllAsync(members);
    }

    [Fact]
    public async Task Three_senders_on_three_silos_each_reach_every_other_member_in_the_order_they_sent()
    {
        var group = NewGroup();
        var members = new List<(TestClient Client, string Id)>();
        for (var silo = 0; silo < 3; silo++)
        {
            members.Add(await MemberAsync(silo, group));
        }

        // Each member's grain sends 100 lines, one awaited send after another, while the others do the same.
        const int Lines = 100;
        await Task.WhenAll(members.Select((m, k) => m.Client.SendAsync(string.Concat(Enumerable.Range(0, Lines).Select(i => $"send {group} s{k} {i}\n")))));

        await Task.WhenAll(members.Select(async (m, k) =>
        {
            var heard = new Dictionary<string, int>();
            var replies = 0;
            while (replies < Lines || heard.Values.Sum() < 2 * Lines)
            {
                var line = await m.Client.ReadLineAsync();
                if (line.StartsWith("sent ", StringComparison.Ordinal))
                {
                    Assert.Equal("sent 2", line);
                    replies++;
                    continue;
                }

                var parts = line.Split(' ');
                Assert.NotEqual($"s{k}", parts[0]);
                var next = heard.GetValueOrDefault(parts[0]);
                Assert.Equal($"{parts[0]} {next}", line);
                heard[parts[0]] = next + 1;
            }

            Assert.All(heard.Values, count => Assert.Equal(Lines, count));
        }));

        await DisposeAllAsync(members);
    }

    [Fact]
    public async Task Group_messages_and_a_members_own_writes_interleave_only_between_messages()
    {
        var group = NewGroup();
        var (client, _) = await MemberAsync(0, group);
        await using var _client = client;

        // The member's grain writes 200 lines of its own in one callback while 200 larger group messages arrive.
        var own = client.SendAsync("own 200\n");
        var groupMessage = new string('g', 2048);
        var sending = Task.Run(async () =>
        {
            for (var n = 0; n < 200; n++)
            {
                await fixture.Cluster.Client.GetGroup(group).Send(Encoding.UTF8.GetBytes($"g {n} {groupMessage}\n"));
            }
        });
        await own;

        int ownNext = 0, groupNext = 0;
        while (ownNext < 200 || groupNext < 200)
        {
            var line = await client.ReadLineAsync();
            if (line.StartsWith("own ", StringComparison.Ordinal))
            {
                Assert.Equal($"own {ownNext++} {new string('o', 1024)}", line);
            }
            else
            {
                Assert.Equal($"g {groupNext++} {groupMessage}", line);
            }
        }

        await sending;
    }

    [Fact]
    public async Task A_member_that_stops_reading_is_closed_past_its_backlog_while_a_steady_reader_gets_every_message()
    {
        var group = NewGroup();
        using var messages = fixture.Collect<long>(2, "orleansprotocol.group.messages");
        var (steady, _) = await MemberAsync(1, group);
        var (stalled, _) = await MemberAsync(2, group);
        await using var _steady = steady;
        await using var _stalled = stalled;

        // The steady member reads as it comes; the stalled one reads nothing. 1 KiB messages until the stalled one is
        // closed: its kernel buffers fill, then its backlog at the gateway goes past MaxGroupBacklog.
        var payload = new string('p', 1017);
        var sent = 0;
        stalled.Socket.ReceiveBufferSize = 4096;
        var reading = Task.Run(async () =>
        {
            // Buffered, so that it reads faster than the group sends.
            using var reader = new StreamReader(new System.Net.Sockets.NetworkStream(steady.Socket, ownsSocket: false));
            for (var n = 0; ; n++)
            {
                if (await reader.ReadLineAsync() is not { } line || line == "end")
                {
                    return n;
                }

                Assert.Equal($"{n:D5} {payload}", line);
            }
        });

        var closed = 0;
        while (closed == 0)
        {
            Assert.True(sent < 50_000, "50 MB sent and the stalled member was not closed");
            var result = await fixture.Grains(0).GetGroup(group).Send(Encoding.UTF8.GetBytes($"{sent++:D5} {payload}\n"));
            closed = result.Closed;
            Assert.Equal(0, result.Dropped);
        }

        await fixture.Grains(0).GetGroup(group).Send("end\n"u8.ToArray());
        Assert.Equal(sent, await reading);
        await stalled.AssertDroppedAsync();
        Assert.Equal(1, await fixture.Grains(0).GetGroup(group).Count());

        // Silo 2's meter counted what it delivered to the stalled member and the close.
        var byOutcome = messages.GetMeasurementSnapshot().GroupBy(m => (string)m.Tags["orleansprotocol.outcome"]!).ToDictionary(g => g.Key, g => g.Sum(m => m.Value));
        Assert.Equal(1, byOutcome["closed"]);
        Assert.Equal(sent - 1, byOutcome["delivered"]);
    }

    [Fact]
    public async Task A_burst_just_inside_the_backlog_reaches_a_member_that_reads_only_afterwards_and_drop_keeps_a_member()
    {
        var group = NewGroup();
        var (late, _) = await MemberAsync(0, group);
        await using var _late = late;

        // A burst smaller than MaxGroupBacklog in all: nothing is dropped or closed, however late the member reads.
        var payload = new string('b', 1017);
        var messages = (int)(Backlog / 1024) - 1;
        for (var n = 0; n < messages; n++)
        {
            Assert.Equal(new GroupSendResult(1, 0, 0), await fixture.Grains(1).GetGroup(group).Send(Encoding.UTF8.GetBytes($"{n:D5} {payload}\n")));
        }

        for (var n = 0; n < messages; n++)
        {
            Assert.Equal($"{n:D5} {payload}", await late.ReadLineAsync());
        }

        // With Drop, a member that stops reading keeps its membership; what did not fit is counted, not queued.
        var dropped = 0;
        for (var n = 0; dropped == 0; n++)
        {
            Assert.True(n < 50_000, "50 MB sent and nothing was dropped");
            dropped = (await fixture.Grains(1).GetGroup(group).Send(Encoding.UTF8.GetBytes($"{n:D5} {payload}\n"), overflow: GroupOverflow.Drop)).Dropped;
        }

        Assert.Equal(1, await fixture.Grains(1).GetGroup(group).Count());
        await late.SendAsync("leave " + group + "\n");
    }

    [Fact]
    public async Task A_frame_goes_to_each_member_in_its_own_framing_and_an_unframed_member_is_counted_as_dropped()
    {
        var group = NewGroup();
        var framed = new List<(TestClient Client, string Id)>();
        for (var silo = 0; silo < 2; silo++)
        {
            var client = await TestClient.ConnectAsync(fixture.EndPoint(silo, "group-frames"));
            var id = Encoding.UTF8.GetString(await ReadFrameAsync(client))["id ".Length..];
            framed.Add((client, id));
            Assert.True(await fixture.Cluster.Client.GetGroup(group).AddById(id));
        }

        var (line, _) = await MemberAsync(2, group);
        await using var _line = line;
        var result = await fixture.Cluster.Client.GetGroup(group).SendFrame("hello, frames"u8.ToArray());
        Assert.Equal(new GroupSendResult(2, 1, 0), result);
        foreach (var (client, _) in framed)
        {
            Assert.Equal("hello, frames", Encoding.UTF8.GetString(await ReadFrameAsync(client)));
        }

        await DisposeAllAsync(framed);
    }

    [Fact]
    public async Task A_thousand_members_through_every_way_out_leave_nothing_behind_on_any_silo()
    {
        var group = NewGroup();
        for (var batch = 0; batch < 20; batch++)
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
            {
                var (client, id) = await MemberAsync((batch + i) % 3, group);
                await using var _ = client;
                switch (i % 4)
                {
                    case 0:
                        break; // the client closes
                    case 1:
                        client.Reset();
                        break;
                    case 2:
                        await client.SendAsync("close\n"); // the protocol closes
                        Assert.Empty(await client.ReadToEndAsync());
                        break;
                    default:
                        await client.SendAsync($"leave {group}\n");
                        Assert.Equal("left True", await client.ReadLineAsync());
                        break;
                }
            }));
        }

        await Poll.UntilAsync(
            () => Enumerable.Range(0, 3).All(s => fixture.Gateway(s).Groups.MembershipCount == 0 && fixture.Gateway(s).Groups.GroupCount == 0),
            () => string.Join(", ", Enumerable.Range(0, 3).Select(s => $"silo {s}: {fixture.Gateway(s).Groups.MembershipCount} memberships in {fixture.Gateway(s).Groups.GroupCount} groups")));
        Assert.Equal(0, await fixture.Cluster.Client.GetGroup(group).Count());
    }

    private static string NewGroup() => $"group-{Guid.NewGuid():N}";

    /// <summary>A client of the "group" listener on <paramref name="silo"/>, a member of <paramref name="group"/> (joined by its own grain).</summary>
    private async Task<(TestClient Client, string Id)> MemberAsync(int silo, string group)
    {
        var client = await TestClient.ConnectAsync(fixture.EndPoint(silo, "group"));
        var id = (await client.ReadLineAsync())["id ".Length..];
        await client.SendAsync($"join {group}\n");
        Assert.Equal($"joined {group}", await client.ReadLineAsync());
        return (client, id);
    }

    private static async Task<byte[]> ReadFrameAsync(TestClient client)
    {
        var header = await client.ReadExactlyAsync(2);
        return await client.ReadExactlyAsync((header[0] << 8) | header[1]);
    }

    private static async Task DisposeAllAsync(IEnumerable<(TestClient Client, string Id)> members)
    {
        foreach (var (client, _) in members)
        {
            await client.DisposeAsync();
        }
    }
}
