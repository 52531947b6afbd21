using System.Net.Sockets;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>The gateway's meter, asserted with MetricCollector on the silo's IMeterFactory.</summary>
[Collection(GatewayCollection.Name)]
public sealed class MetricsTests(GatewayClusterFixture fixture)
{
    private MetricCollector<T> Collect<T>(string instrument)
        where T : struct => fixture.Collect<T>(instrument);

    private static IEnumerable<CollectedMeasurement<T>> For<T>(MetricCollector<T> collector, string listener)
        where T : struct =>
        collector.GetMeasurementSnapshot().Where(m => (string?)m.Tags["orleansprotocol.listener"] == listener);

    [Fact]
    public async Task Connections_bytes_refusals_and_close_reasons_are_measured_per_listener_without_ids_or_addresses()
    {
        using var active = Collect<long>("orleansprotocol.active_connections");
        using var rejected = Collect<long>("orleansprotocol.rejected_connections");
        using var bytes = Collect<long>("orleansprotocol.io.bytes");
        using var duration = Collect<double>("orleansprotocol.connection.duration");
        using var calls = Collect<double>("orleansprotocol.grain_call.duration");
        var name = $"metrics-{Guid.NewGuid():N}";
        await using (var server = await fixture.Gateway.CreateServerAsync<ScriptGrain>(name, o =>
        {
            o.Port = 0;
            o.MaxConnections = 1;
        }))
        {
            await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
            await client.SendAsync("echo hello\n");
            Assert.Equal("hello", await client.ReadLineAsync());

            try
            {
                await using var refused = await TestClient.ConnectAsync(server.EndPoints[0]);
                await refused.ReadToEndAsync();
            }
            catch (SocketException)
            {
            }

            await client.SendAsync("close\n");
            await client.ReadToEndAsync();
            await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        }

        // Disposing the server waited for its connections, which record their close before they complete.

        Assert.Equal(0, For(active, name).Sum(m => m.Value));
        Assert.Equal(2, For(active, name).Count());
        var refusal = Assert.Single(For(rejected, name));
        Assert.Equal("listener_limit", refusal.Tags["orleansprotocol.reason"]);
        Assert.Equal("echo hello\nclose\n".Length, For(bytes, name).Where(m => (string?)m.Tags["network.io.direction"] == "receive").Sum(m => m.Value));
        Assert.Equal("hello\nbye\n".Length, For(bytes, name).Where(m => (string?)m.Tags["network.io.direction"] == "transmit").Sum(m => m.Value));
        var closed = Assert.Single(For(duration, name));
        Assert.Equal(nameof(ConnectionCloseReason.LocalClose), closed.Tags["orleansprotocol.close_reason"]);
        Assert.False(closed.Tags.ContainsKey("error.type"));
        Assert.Contains(For(calls, name), m => (string?)m.Tags["orleansprotocol.callback"] == "data_received");

        // Cardinality: no tag carries a connection id or an address.
        foreach (var tags in For(active, name).Concat(For(bytes, name)).Select(m => m.Tags))
        {
            Assert.DoesNotContain(tags.Values, v => v is string text && (text.Contains('/') || text.Contains("127.0.0.1")));
        }
    }

    [Fact]
    public async Task A_frame_over_the_limit_is_counted()
    {
        using var framesOver = Collect<long>("orleansprotocol.frames_over_limit");
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("frames-be2"));
        await client.SendAsync(new byte[] { 0x03, 0xE9 });
        await client.ReadToEndAsync();
        Assert.Equal(1, For(framesOver, "frames-be2").Sum(m => m.Value));
    }
}
