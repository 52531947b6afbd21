using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Three real silo processes of the gateway host on Redis membership (a real redis-server on a free port): a SIGKILL,
/// then a graceful stop, and what every client and grain sees.
/// </summary>
public sealed class MultiProcessClusterTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // Failure detection tuned down for the test (defaults: probes every 5 s, 3 missed, 2 votes); the README documents
    // these settings and the detection times they give.
    private static readonly string[] FastDetection =
    [
        "--Orleans:Membership:ProbeTimeout=00:00:01",
        "--Orleans:Membership:NumMissedProbesLimit=2",
        "--Orleans:Membership:NumVotesForDeathDeclaration=1",
        "--Orleans:Membership:TableRefreshTimeout=00:00:01",
    ];

    private static readonly TimeSpan DetectionBound = TimeSpan.FromSeconds(30);

    private static async Task<bool> EchoesAsync(TestClient client, string line)
    {
        try
        {
            await client.SendAsync(line + "\n");
            var reply = await client.ReadLineAsync();
            return reply.EndsWith(line, StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is EndOfStreamException or SocketException or IOException)
        {
            return false;
        }
    }

    [SkippableFact]
    public async Task Three_silo_processes_survive_a_SIGKILL_and_a_graceful_stop_with_nothing_lost_silently()
    {
        Skip.IfNot(RedisServer.Installed, RedisServer.NotInstalled);
        var (redis, redisPort) = await RedisServer.StartAsync();
        try
        {
            var clusterId = $"test-{Guid.NewGuid():N}";

            // echo: grains on another silo than the socket; upgrade (a line echo): grains next to the socket.
            var silos = Enumerable.Range(0, 3).Select(i => GatewayHostProcess.Start(
                HostSettings(
                    redisPort, clusterId, 21000 + (i * 100), "--OrleansProtocol:Listeners:echo:Placement=Remote",
                    // Chat members sleep whenever they are quiet for a second: the room's lines reach them asleep.
                    "--OrleansProtocol:Listeners:chat:HibernateAfter=00:00:01"))).ToList();
            try
            {
                var endPoints = new List<Dictionary<string, IPEndPoint>>();
                foreach (var silo in silos)
                {
                    endPoints.Add(await silo.WaitForListenersAsync("echo", "upgrade", "chat", "resp"));
                }

                var remote = new List<TestClient>();
                var local = new List<TestClient>();
                for (var i = 0; i < 3; i++)
                {
                    remote.Add(await TestClient.ConnectAsync(endPoints[i]["echo"]));
                    local.Add(await TestClient.ConnectAsync(endPoints[i]["upgrade"]));
                    Assert.True(await EchoesAsync(remote[i], $"remote {i}"));
                    Assert.True(await EchoesAsync(local[i], $"local {i}"));
                }

                // A chat room with members on every silo; the first joiner is on silo 0, so the room lives there.
                var room = $"room-{Guid.NewGuid():N}";
                var members = new List<ChatMember>();
                foreach (var silo in new[] { 0, 1, 2, 0, 1 })
                {
                    members.Add(await ChatMember.JoinAsync(endPoints[silo]["chat"], $"m{members.Count}-silo{silo}", room));
                }

                await Task.WhenAll(members.Select(m => m.TalkAsync(10, TimeSpan.FromMilliseconds(5))));
                await members[0].WaitForAsync(members.Skip(1).Select(m => m.Nick), 10);

                // A RESP channel with a subscriber on every silo.
                var channel = $"news-{Guid.NewGuid():N}";
                var subscribers = new List<TestClient>();
                for (var i = 0; i < 3; i++)
                {
                    var subscriber = await TestClient.ConnectAsync(endPoints[i]["resp"]);
                    await subscriber.SendAsync($"SUBSCRIBE {channel}\r\n");
                    Assert.Equal(["*3\r", "$9\r", "subscribe\r", $"${channel.Length}\r", $"{channel}\r", ":1\r"], await ReadLinesAsync(subscriber, 6));
                    subscribers.Add(subscriber);
                }

                // Crash silo 2.
                var crashed = Stopwatch.StartNew();
                silos[2].Kill();

                // The members whose socket and grain survive all talk at once: nobody is reset for the dead member,
                // and each hears every line of every other survivor once, in order.
                var survivors = members.Where(m => !m.Nick.EndsWith("silo2", StringComparison.Ordinal)).ToList();
                await Task.WhenAll(survivors.Select(m => m.TalkAsync(30, TimeSpan.FromMilliseconds(10))));
                var expected = Enumerable.Range(0, 10).Concat(Enumerable.Range(0, 30)).Select(i => $"line {i}").ToArray();
                foreach (var member in survivors)
                {
                    var others = survivors.Where(m => m != member).Select(m => m.Nick).ToArray();
                    await member.WaitForAsync(others, expected.Length);
                    foreach (var other in others)
                    {
                        Assert.Equal(expected, member.HeardFrom(other));
                    }
                }

                output.WriteLine($"chat survivors heard every line at {crashed.Elapsed}");

                // PUBLISH from silo 0's and silo 1's gateways: each surviving subscriber gets every message once, in order.
                await using (var publisher = await TestClient.ConnectAsync(endPoints[1]["resp"]))
                {
                    for (var n = 0; n < 20; n++)
                    {
                        await publisher.SendAsync($"PUBLISH {channel} m{n:D2}\r\n");
                        // The receivers on the publishing grain's silo, as in a Redis Cluster: one subscriber per silo.
                        Assert.Equal(":1\r", await publisher.ReadLineAsync());
                    }
                }

                foreach (var subscriber in subscribers.Take(2))
                {
                    for (var n = 0; n < 20; n++)
                    {
                        Assert.Equal(["*3\r", "$7\r", "message\r", $"${channel.Length}\r", $"{channel}\r", "$3\r", $"m{n:D2}\r"], await ReadLinesAsync(subscriber, 7));
                    }

                    await subscriber.DisposeAsync();
                }

                await subscribers[2].DisposeAsync(); // its silo was killed

                // Its clients lose their sockets with the process.
                Assert.False(await EchoesAsync(remote[2], "after crash"));
                Assert.False(await EchoesAsync(local[2], "after crash"));

                // Clients on silos 0 and 1: connections whose grains were next to their sockets keep working with zero
                // loss; a connection whose grain was on silo 2 is closed, within the detection bound, never hangs.
                for (var i = 0; i < 2; i++)
                {
                    for (var round = 0; round < 20; round++)
                    {
                        Assert.True(await EchoesAsync(local[i], $"local {i} round {round}"), $"local client {i} broke");
                    }

                    var alive = await EchoesAsync(remote[i], $"remote {i} after crash").WaitAsync(DetectionBound + TestTimeouts.Default);
                    output.WriteLine($"remote client on silo {i}: {(alive ? "alive" : "closed")} at {crashed.Elapsed}");
                    Assert.True(crashed.Elapsed < DetectionBound + TestTimeouts.Default);
                    if (alive)
                    {
                        Assert.True(await EchoesAsync(remote[i], $"remote {i} again"));
                    }
                }

                // The grain of the crashed silo's remote connection lives on silo 0 or 1: it was told its gateway died.
                var told = await Task.WhenAny(
                    silos[0].WaitForOutputAsync("The silo holding the socket"),
                    silos[1].WaitForOutputAsync("The silo holding the socket"));
                await told.WaitAsync(DetectionBound);
                output.WriteLine($"grain told its gateway died at {crashed.Elapsed}");
                Assert.True(crashed.Elapsed < DetectionBound + DetectionBound, $"detected after {crashed.Elapsed}");

                // A graceful stop of silo 1 leaves silo 0's local connection untouched.
                var stopping = Stopwatch.StartNew();
                Assert.Equal(0, await silos[1].TerminateAsync());
                output.WriteLine($"silo 1 stopped gracefully in {stopping.Elapsed}");
                for (var round = 0; round < 20; round++)
                {
                    Assert.True(await EchoesAsync(local[0], $"last {round}"), "silo 0's local client broke when silo 1 left");
                }

                foreach (var client in remote.Concat(local))
                {
                    await client.DisposeAsync();
                }

                foreach (var member in members)
                {
                    await member.DisposeAsync();
                }
            }
            finally
            {
                silos.ForEach(s => s.Dispose());
            }
        }
        finally
        {
            redis.Kill();
        }
    }

    /// <summary>One silo process of a test cluster on Redis membership: fresh silo ports, the sample ports moved by <paramref name="portOffset"/>.</summary>
    private static string[] HostSettings(int redisPort, string clusterId, int portOffset, params string[] extra) =>
    [
        "--Clustering:Provider=Redis",
        $"--Clustering:Redis:ConnectionString=127.0.0.1:{redisPort}",
        $"--Orleans:ClusterId={clusterId}",
        $"--Silo:SiloPort={TestPorts.Free()}",
        $"--Silo:GatewayPort={TestPorts.Free()}",
        "--Silo:AdvertisedIP=127.0.0.1",
        $"--OrleansProtocol:PortOffset={portOffset}",
        "--Health:Urls=http://127.0.0.1:0",
        .. FastDetection,
        .. extra,
    ];

    [SkippableFact]
    public async Task A_rolling_restart_of_three_silos_resets_no_connection_whose_socket_stays_up_and_state_moves_with_its_grain()
    {
        Skip.IfNot(RedisServer.Installed, RedisServer.NotInstalled);
        const int perSilo = 100;
        var (redis, redisPort) = await RedisServer.StartAsync();
        var clusterId = $"test-{Guid.NewGuid():N}";
        string[] Settings(int i) => HostSettings(
            redisPort, clusterId, 22000 + (i * 100), "--OrleansProtocol:Listeners:echo:Placement=Random", "--OrleansProtocol:Listeners:chat:Placement=Random",
            "--OrleansProtocol:Listeners:upgrade:Placement=Random",
            // Chat members sleep between rounds: a stop must leave a hibernated member's state with its socket.
            "--OrleansProtocol:Listeners:chat:HibernateAfter=00:00:02");
        string[] operatorSettings = ["--Clustering:Provider=Redis", $"--Clustering:Redis:ConnectionString=127.0.0.1:{redisPort}", $"--Orleans:ClusterId={clusterId}"];

        var silos = new GatewayHostProcess[3];
        var endPoints = new Dictionary<string, IPEndPoint>[3];
        var streams = new List<(int Silo, StreamingEchoClient Stream)>();
        var members = new List<(int Silo, ChatMember Member)>();

        // Clients of the line sample (7002), a protocol that does not opt in to moving: closed cleanly when its grain's
        // silo stops. Open until then.
        var lineClients = new List<(int Silo, TestClient Client)>();
        var closedLineClients = new HashSet<TestClient>();
        var closedAwayFromTheirGrain = 0;
        async Task StartSiloAsync(int i)
        {
            silos[i] = GatewayHostProcess.Start(Settings(i));
            endPoints[i] = await silos[i].WaitForListenersAsync("echo", "chat", "upgrade", "resp");
        }

        // Groups through the restart: a RESP channel over the silos that are up, and every chat member still connected
        // hears every line of the others.
        async Task CheckGroupsAsync(string when, params int[] up)
        {
            await RespChannelCheck.RunAsync([.. up.Select(i => endPoints[i]["resp"])], 0, $"rolling-{Guid.NewGuid():N}");
            var talking = members.Where(m => up.Contains(m.Silo) && !m.Member.Ended).Select(m => m.Member).ToList();
            var before = talking.ToDictionary(m => m.Nick, m => talking.Where(o => o != m).ToDictionary(o => o.Nick, o => m.HeardFrom(o.Nick).Count));
            await Task.WhenAll(talking.Select(m => m.TalkAsync(3, TimeSpan.Zero)));
            foreach (var member in talking)
            {
                foreach (var other in talking.Where(o => o != member))
                {
                    await member.WaitForAsync([other.Nick], before[member.Nick][other.Nick] + 3);
                }
            }

            output.WriteLine($"{when}: a RESP channel over silos {string.Join(",", up)} and {talking.Count} chat members heard everything");
        }

        async Task ConnectAsync(int i)
        {
            for (var n = 0; n < perSilo; n++)
            {
                streams.Add((i, await StreamingEchoClient.StartAsync(endPoints[i]["echo"], seed: streams.Count, chunk: 512, pace: TimeSpan.FromMilliseconds(100))));
            }

            for (var n = 0; n < 2; n++)
            {
                var member = await ChatMember.JoinAsync(endPoints[i]["chat"], $"m{members.Count}", "rolling");
                await member.TalkAsync(3, TimeSpan.Zero);
                members.Add((i, member));
            }

            await ConnectLineClientsAsync(i);
        }

        async Task ConnectLineClientsAsync(int i)
        {
            for (var n = 0; n < 10; n++)
            {
                // A source address per gateway: the listing names clients by address and port, and one port may serve
                // connections to two gateways at once.
                var client = await TestClient.ConnectFromAsync(endPoints[i]["upgrade"], IPAddress.Parse($"127.0.0.{i + 2}"));
                Assert.True(await EchoesAsync(client, $"hello {lineClients.Count}"));
                lineClients.Add((i, client));
            }
        }

        try
        {
            for (var i = 0; i < 3; i++)
            {
                await StartSiloAsync(i);
            }

            for (var i = 0; i < 3; i++)
            {
                await ConnectAsync(i);
            }

            for (var stopping = 0; stopping < 3; stopping++)
            {
                var live = streams.Where(s => s.Stream.Failure is null && !s.Stream.EndedByServer).ToList();
                await Task.WhenAll(live.Select(s => s.Stream.WaitForProgressAsync(512)));

                // The stopping silo's line clients may all have been closed with the grains of earlier rounds (each has
                // its grain elsewhere two times in three): it gets new ones, as clients reconnect.
                if (!lineClients.Any(l => l.Silo == stopping && !closedLineClients.Contains(l.Client)))
                {
                    await ConnectLineClientsAsync(stopping);
                }

                // Where each line client's socket and grain are, from the cluster's own listing (the operator's tool).
                var (code, listing) = await ClusterClientProcess.RunAsync([.. operatorSettings, "list", "upgrade"]);
                Assert.True(code == 0, listing);
                var sitings = System.Text.RegularExpressions.Regex.Matches(listing, @"^upgrade/\S+\t(?<peer>\S+)\t(?<socket>\S+)\t(?<grain>\S+)\t", System.Text.RegularExpressions.RegexOptions.Multiline)
                    .ToDictionary(m => m.Groups["peer"].Value, m => (Socket: m.Groups["socket"].Value, Grain: m.Groups["grain"].Value));
                var openLines = lineClients.Where(l => !closedLineClients.Contains(l.Client)).ToList();
                var stoppingSilo = sitings[openLines.First(l => l.Silo == stopping).Client.LocalEndPoint.ToString()].Socket;

                // Before the first stop the quiet chat members are asleep, as the cluster's own listing says.
                if (stopping == 0)
                {
                    await Poll.UntilAsync(async () =>
                    {
                        var (_, chat) = await ClusterClientProcess.RunAsync([.. operatorSettings, "list", "chat"]);
                        return System.Text.RegularExpressions.Regex.Matches(chat, @"\thibernated\t").Count >= members.Count;
                    }, () => "the chat members did not all hibernate");
                }

                // Each sends a burst it does not read before the stop: the replies are in flight as the silo goes.
                var burst = Enumerable.Range(0, 100).Select(k => $"round {stopping} line {k} " + new string('x', 1000)).ToArray();
                var expected = string.Concat(burst.Select(line => $"echo: {line}\n"));
                await Task.WhenAll(openLines.Select(l => l.Client.SendAsync(string.Concat(burst.Select(line => line + "\n")))));

                var stopwatch = Stopwatch.StartNew();
                Assert.Equal(0, await silos[stopping].TerminateAsync());
                var moved = System.Text.RegularExpressions.Regex.Match(silos[stopping].Output, @"(\d+) connection grain\(s\) moved to the silos of their sockets; (\d+) could not move");
                output.WriteLine($"silo {stopping} stopped gracefully in {stopwatch.Elapsed}: {moved.Value}");

                // With Random placement about two thirds of the grains on the stopping silo serve sockets elsewhere.
                Assert.True(moved.Success && int.Parse(moved.Groups[1].Value) > 0, $"no grain moved away from silo {stopping}");

                // Its own clients: everything, then a FIN. Every other client: still streaming, nothing lost.
                foreach (var (silo, stream) in live.Where(s => s.Silo == stopping))
                {
                    await stream.Completion.WaitAsync(TestTimeouts.Default);
                    Assert.True(stream.EndedByServer, $"a client of the stopped silo {stopping}: {stream.Failure}");
                    Assert.Null(stream.Failure);
                }

                var others = live.Where(s => s.Silo != stopping).ToList();
                await Task.WhenAll(others.Select(s => s.Stream.WaitForProgressAsync(512)));
                Assert.All(others, s => Assert.Null(s.Stream.Failure));

                // The chat grains that lived on the stopped silo moved with their state: the count goes on.
                foreach (var (silo, member) in members.Where(m => m.Silo != stopping && !m.Member.Ended))
                {
                    var answer = await member.WhoAmIAsync();
                    Assert.EndsWith($"; {member.LinesSent} lines received", answer);
                }

                // Line clients whose socket or grain was on the stopped silo: the replies to a prefix of the burst, whole and
                // in order, then a FIN (a reset throws here). The others: every reply, and still served.
                foreach (var (silo, client) in openLines)
                {
                    var siting = sitings[client.LocalEndPoint.ToString()];
                    if (silo == stopping || siting.Grain == stoppingSilo)
                    {
                        var text = System.Text.Encoding.UTF8.GetString(await client.ReadToEndAsync());
                        Assert.True(expected.StartsWith(text, StringComparison.Ordinal) && (text.Length == 0 || text[^1] == '\n'),
                            $"a line client ({siting}) of the stopped silo {stoppingSilo} got {text.Length} bytes that are not whole replies in order");
                        closedLineClients.Add(client);
                        closedAwayFromTheirGrain += silo == stopping ? 0 : 1;
                    }
                    else
                    {
                        Assert.Equal(expected, System.Text.Encoding.UTF8.GetString(await client.ReadExactlyAsync(System.Text.Encoding.UTF8.GetByteCount(expected))));
                        Assert.True(await EchoesAsync(client, $"still here after silo {stopping}"));
                    }
                }

                await CheckGroupsAsync($"silo {stopping} down", [.. Enumerable.Range(0, 3).Where(i => i != stopping)]);

                stopwatch.Restart();
                await StartSiloAsync(stopping);
                output.WriteLine($"silo {stopping} back in {stopwatch.Elapsed}");
                await ConnectAsync(stopping);
                await CheckGroupsAsync($"silo {stopping} back", 0, 1, 2);
            }

            var survivors = streams.Where(s => !s.Stream.EndedByServer).ToList();
            await Task.WhenAll(survivors.Select(s => s.Stream.WaitForProgressAsync(512)));
            foreach (var (_, stream) in streams)
            {
                await stream.StopAsync();
                Assert.Null(stream.Failure);
            }

            output.WriteLine($"{streams.Count} streams, {streams.Count(s => s.Stream.EndedByServer)} ended by their silo's stop with a FIN, "
                + $"{streams.Sum(s => s.Stream.Echoed)} bytes echoed and checked; none reset");

            // With Random placement about a third of the line clients on the other silos had their grain on the stopping
            // one; each of those was closed after its replies, never reset.
            output.WriteLine($"{lineClients.Count} line clients, {closedLineClients.Count} closed with a FIN after their replies, {closedAwayFromTheirGrain} of them on a silo that stayed up");
            Assert.True(closedAwayFromTheirGrain > 0, "no line client had its grain on a stopped silo away from its socket");
        }
        finally
        {
            foreach (var (_, stream) in streams)
            {
                await stream.DisposeAsync();
            }

            foreach (var (_, member) in members)
            {
                await member.DisposeAsync();
            }

            foreach (var (_, client) in lineClients)
            {
                await client.DisposeAsync();
            }

            foreach (var silo in silos)
            {
                silo?.Dispose();
            }

            redis.Kill();
        }
    }

    private static async Task<string[]> ReadLinesAsync(TestClient client, int count)
    {
        var lines = new string[count];
        for (var i = 0; i < count; i++)
        {
            lines[i] = await client.ReadLineAsync();
        }

        return lines;
    }
}
