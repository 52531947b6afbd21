using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.Placement;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Gateway.Hosting;
using OrleansProtocol.Samples;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Three silos, a gateway on each: grains away from their sockets, addressable connections, the chat sample.</summary>
public sealed class ThreeSiloFixture : IAsyncLifetime
{
    public CallbackRecorder Recorder { get; } = new();

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public EndPoint EndPoint(int silo, string listener) =>
        Cluster.Silos[silo].ServiceProvider.GetRequiredService<ProtocolGateway>().GetServer(listener).EndPoints[0];

    public IGrainFactory Grains(int silo) => Cluster.Silos[silo].ServiceProvider.GetRequiredService<IGrainFactory>();

    public ProtocolGateway Gateway(int silo) => Cluster.Silos[silo].ServiceProvider.GetRequiredService<ProtocolGateway>();

    /// <summary>Collects one of silo <paramref name="silo"/>'s gateway instruments from its meter factory, from now on.</summary>
    public Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<T> Collect<T>(int silo, string instrument)
        where T : struct =>
        new(Cluster.Silos[silo].ServiceProvider.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), OrleansProtocol.Gateway.Diagnostics.GatewayMetrics.MeterName, instrument);

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(3);

        // As the host runs in production (see ClusteringConfiguration): the default directory drops grains when a silo leaves.
        builder.Options.UseDistributedGrainDirectory = true;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(Recorder);
            silo.AddProtocolListener<ChatGrain>("chat", o => o.Port = 0);
            silo.AddProtocolListener<RespGrain>("resp", o =>
            {
                o.Port = 0;
                RespListener.Configure(o);
            });
            silo.AddProtocolListener<EchoGrain>("remote-echo", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
            });
            silo.AddProtocolListener<ScriptGrain>("remote-script", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
            });
            silo.AddProtocolListener<GroupMemberGrain>("group", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
                o.MaxGroupBacklog = GroupTests.Backlog;
            });
            silo.AddProtocolListener<GroupMemberGrain>("group-frames", o =>
            {
                o.Port = 0;
                o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 2 };
            });
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        await Cluster.WaitForLivenessToStabilizeAsync();
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class ThreeSiloCollection : ICollectionFixture<ThreeSiloFixture>
{
    public const string Name = "three silos";
}

[Collection(ThreeSiloCollection.Name)]
public sealed class ScaleOutTests(ThreeSiloFixture fixture)
{
    [Fact]
    public async Task Grains_on_another_silo_than_their_socket_echo_a_thousand_random_round_trips_byte_exact()
    {
        // Each connection's grain lives on another silo: every callback and every write crosses silos.
        await using (var probe = await TestClient.ConnectAsync(fixture.EndPoint(0, "remote-script")))
        {
            await probe.SendAsync("whereami\n");
            Assert.NotEqual(fixture.Cluster.Silos[0].SiloAddress.ToString(), await probe.ReadLineAsync());
        }

        await Task.WhenAll(Enumerable.Range(0, 3).Select(silo => Task.Run(async () =>
        {
            await using var client = await TestClient.ConnectAsync(fixture.EndPoint(silo, "remote-echo"));
            var random = new Random(silo);
            for (var i = 0; i < 1000; i++)
            {
                var payload = new byte[random.Next(1, 4097)];
                random.NextBytes(payload);
                var reading = client.ReadExactlyAsync(payload.Length);
                await client.SendAsync(payload);
                var echoed = await reading;
                Assert.True(payload.AsSpan().SequenceEqual(echoed), $"silo {silo}, round {i}");
            }
        })));
    }

    [Fact]
    public async Task Writes_pushed_from_a_grain_on_a_third_silo_arrive_in_order()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint(0, "remote-script"));
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        await client.SendAsync("whereami\n");
        var grainSilo = await client.ReadLineAsync();

        // The pusher goes on the silo that holds neither the socket (silo 0) nor the grain.
        var third = fixture.Cluster.Silos.Select(s => s.SiloAddress)
            .First(s => !s.Equals(fixture.Cluster.Silos[0].SiloAddress) && s.ToString() != grainSilo);
        RequestContext.Set(IPlacementDirector.PlacementHintKey, third);
        var pushing = fixture.Grains(0).GetGrain<IPusherGrain>(Guid.NewGuid()).Push(record.Connection, 500);
        RequestContext.Remove(IPlacementDirector.PlacementHintKey);

        for (var i = 0; i < 500; i++)
        {
            Assert.Equal($"pushed {i}", await client.ReadLineAsync());
        }

        Assert.Equal(third.ToString(), await pushing);
    }

    [Fact]
    public async Task Chat_clients_on_three_gateways_in_one_room_each_receive_every_other_clients_lines()
    {
        var clients = new List<TestClient>();
        for (var silo = 0; silo < 3; silo++)
        {
            var client = await TestClient.ConnectAsync(fixture.EndPoint(silo, "chat"));
            Assert.StartsWith("* welcome", await client.ReadLineAsync());
            await client.SendAsync($"/nick user{silo}\n");
            Assert.Equal($"* you are now user{silo}", await client.ReadLineAsync());
            await client.SendAsync("/join lobby\n");
            Assert.Equal($"* joined lobby ({silo} others here)", await client.ReadLineAsync());
            clients.Add(client);
        }

        // Everyone has joined; the join notices arrive first.
        for (var silo = 0; silo < 3; silo++)
        {
            for (var later = silo + 1; later < 3; later++)
            {
                Assert.Equal($"* user{later} joined", await clients[silo].ReadLineAsync());
            }
        }

        for (var silo = 0; silo < 3; silo++)
        {
            await clients[silo].SendAsync($"hello from silo {silo}\n");
            for (var other = 0; other < 3; other++)
            {
                if (other != silo)
                {
                    Assert.Equal($"<user{silo}> hello from silo {silo}", await clients[other].ReadLineAsync());
                }
            }
        }

        // Addressable: the listener's live connections, cluster-wide, found and closed by id from any silo.
        var listed = await fixture.Grains(2).ListConnectionsAsync("chat");
        Assert.True(listed.Length >= 3);
        var first = listed.Single(c => Equals(c.RemoteEndPoint, clients[0].LocalEndPoint));
        Assert.Equal(fixture.Cluster.Silos[0].SiloAddress.ToParsableString(), first.GatewaySilo);
        var connection = await fixture.Grains(1).FindConnectionAsync(first.ConnectionId);
        Assert.NotNull(connection);
        await connection.Send("a direct word\n"u8.ToArray());
        Assert.Equal("a direct word", await clients[0].ReadLineAsync());
        await connection.Close();
        Assert.Empty(await clients[0].ReadToEndAsync());
        Assert.Equal("* user0 left", await clients[1].ReadLineAsync());
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(1, 50)]
    [InlineData(3, 20)]
    public async Task Chat_members_on_three_silos_all_talking_at_once_hear_every_line_once_in_order(int membersPerSilo, int lines)
    {
        // Each member's DataReceived awaits the room while the room writes to the others, whose own DataReceived are
        // awaiting the room too: the call cycle that deadlocked until Orleans' 30 s timeout.
        var room = $"room-{Guid.NewGuid():N}";
        var members = new List<ChatMember>();
        var count = membersPerSilo == 1 ? 2 : 3 * membersPerSilo;
        for (var i = 0; i < count; i++)
        {
            members.Add(await ChatMember.JoinAsync(fixture.EndPoint(i % 3, "chat"), $"m{i}", room));
        }

        try
        {
            await Task.WhenAll(members.Select(m => m.TalkAsync(lines, TimeSpan.FromMilliseconds(10))));
            var expected = Enumerable.Range(0, lines).Select(i => $"line {i}").ToArray();
            foreach (var member in members)
            {
                var others = members.Where(m => m != member).Select(m => m.Nick).ToArray();
                await member.WaitForAsync(others, lines);
                foreach (var other in others)
                {
                    Assert.Equal(expected, member.HeardFrom(other));
                }
            }
        }
        finally
        {
            foreach (var member in members)
            {
                await member.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Calls_to_a_connection_that_is_gone_throw_and_its_stray_activation_goes_away()
    {
        // A live connection, then gone: Send throws ConnectionClosedException so a fan-out can drop it.
        ConnectionInfo info;
        await using (var client = await TestClient.ConnectAsync(fixture.EndPoint(1, "chat")))
        {
            Assert.StartsWith("* welcome", await client.ReadLineAsync());
            info = (await fixture.Grains(0).ListConnectionsAsync("chat")).Single(c => Equals(c.RemoteEndPoint, client.LocalEndPoint));
            await fixture.Grains(0).GetConnection(info).Send("direct\n"u8.ToArray());
            Assert.Equal("direct", await client.ReadLineAsync());
        }

        // Once its grain has gone, a call by id activates a stray one that knows no connection.
        var connection = fixture.Grains(0).GetConnection(info);
        await fixture.Cluster.WaitForDeactivationAsync(connection.GetGrainId()).WaitAsync(TestTimeouts.Default);
        var gone = await Assert.ThrowsAsync<ConnectionClosedException>(() => connection.Send("late\n"u8.ToArray()));
        Assert.Contains(info.ConnectionId, gone.Message);
        Assert.Null(await connection.GetInfo());
        await connection.Close();
        await connection.Abort();

        // The stray activation does not linger (protocol grains are otherwise kept alive), nor does one for an id
        // that never existed.
        await fixture.Cluster.WaitForDeactivationAsync(connection.GetGrainId()).WaitAsync(TestTimeouts.Default);
        var stray = fixture.Grains(2).GetConnection(info with { ConnectionId = $"chat/{Guid.NewGuid():N}" });
        await Assert.ThrowsAsync<ConnectionClosedException>(() => stray.Send("x"u8.ToArray()));
        await fixture.Cluster.WaitForDeactivationAsync(stray.GetGrainId()).WaitAsync(TestTimeouts.Default);
        Assert.False(fixture.Cluster.TryGetGrainContext(stray.GetGrainId(), out _));
    }

    [Fact]
    public async Task Grains_away_from_their_sockets_give_back_their_gateway_watches_after_hundreds_of_connections()
    {
        // Each remote grain watches its socket's silo (one watch while this connection lives); closed or reset, every
        // watch ends with its connection.
        var counts = fixture.Cluster.Silos
            .Select(s => s.ServiceProvider.GetRequiredService<OrleansProtocol.Diagnostics.ConnectionGrainCounters>().For("remote-echo"))
            .ToArray();
        await using (var watched = await TestClient.ConnectAsync(fixture.EndPoint(0, "remote-echo")))
        {
            await watched.SendAsync("watched\n");
            Assert.Equal("watched", await watched.ReadLineAsync());
            Assert.True(counts.Sum(c => c.GatewayWatches) >= 1);
        }

        await Task.WhenAll(Enumerable.Range(0, 3).Select(silo => Task.Run(async () =>
        {
            for (var i = 0; i < 100; i++)
            {
                var client = await TestClient.ConnectAsync(fixture.EndPoint(silo, "remote-echo"));
                await client.SendAsync($"round {i}\n");
                Assert.Equal($"round {i}", await client.ReadLineAsync());
                if (i % 2 == 0)
                {
                    client.Reset();
                }
                else
                {
                    client.ShutdownSend();
                    Assert.Empty(await client.ReadToEndAsync());
                    await client.DisposeAsync();
                }
            }
        })));

        await Poll.UntilAsync(
            () => counts.All(c => c.GatewayWatches == 0 && c.Connections == 0),
            () => string.Join(", ", counts.Select(c => $"{c.Connections} connections, {c.GatewayWatches} watches")));
    }
}
