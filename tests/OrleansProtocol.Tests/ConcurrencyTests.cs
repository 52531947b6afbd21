using System.Net.Sockets;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>Many connections at once: isolation of failures and byte-exact data under load.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ConcurrencyTests(GatewayClusterFixture fixture)
{
    private static async Task EchoRoundTripsAsync(TestClient client, int rounds, int maxSize, int seed)
    {
        var random = new Random(seed);
        for (var i = 0; i < rounds; i++)
        {
            var payload = new byte[random.Next(1, maxSize + 1)];
            random.NextBytes(payload);
            var reading = client.ReadExactlyAsync(payload.Length);
            await client.SendAsync(payload);
            var echoed = await reading;
            Assert.True(payload.AsSpan().SequenceEqual(echoed), $"round {i}: {payload.Length} bytes differ");
        }
    }

    [Fact]
    public async Task A_callback_that_throws_closes_only_its_connection_while_50_others_keep_echoing()
    {
        var others = new List<TestClient>();
        for (var i = 0; i < 50; i++)
        {
            others.Add(await TestClient.ConnectAsync(fixture.EndPoint("echo")));
        }

        var traffic = others.Select((c, i) => EchoRoundTripsAsync(c, 20, 4096, i)).ToList();

        var (failing, record) = await fixture.ConnectScriptAsync();

        await using var disposeClient = failing;
        await failing.SendAsync("throw\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        try
        {
            Assert.Empty(await failing.ReadToEndAsync());
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        await Task.WhenAll(traffic);

        // And they still work after the failure.
        await Task.WhenAll(others.Select((c, i) => EchoRoundTripsAsync(c, 5, 4096, 100 + i)));
        Assert.IsType<InvalidOperationException>(record.LostException);
        foreach (var client in others)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Hundred_connections_times_hundred_random_round_trips_of_1_byte_to_64_KiB_are_byte_exact()
    {
        var clients = new List<TestClient>();
        for (var i = 0; i < 100; i++)
        {
            clients.Add(await TestClient.ConnectAsync(fixture.EndPoint("echo")));
        }

        await Task.WhenAll(clients.Select((c, i) => Task.Run(() => EchoRoundTripsAsync(c, 100, 64 * 1024, 1000 + i))));
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }
}
