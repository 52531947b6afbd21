using System.Net.Sockets;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The connection as a nursery: CreateTask, CallSoon, CallLater/CallAt and Time, all bound to the connection.</summary>
[Collection(GatewayCollection.Name)]
public sealed class LoopTests(GatewayClusterFixture fixture)
{
    private async Task<(TestClient Client, ConnectionRecord Record)> ConnectAsync()
    {
        var client = await TestClient.ConnectAsync(fixture.EndPoint("loop"));
        return (client, await fixture.Recorder.ForClientAsync(client.LocalEndPoint));
    }

    [Fact]
    public async Task CallLater_fires_in_due_order_not_before_When_and_a_cancelled_handle_never_fires()
    {
        var (client, record) = await ConnectAsync();
        await using var disposeClient = client;

        // X is cancelled; Y is due after X would have been: when Y fires, X had its chance and must not have taken it.
        await client.SendAsync("later A 300\nlater B 100\nlater X 150\ncancel X\nlater Y 200\n");
        var fired = new[] { await client.ReadLineAsync(), await client.ReadLineAsync(), await client.ReadLineAsync() };

        var events = record.Events;
        var trace = string.Join(" | ", events);
        Assert.True(fired.SequenceEqual(["fired B", "fired Y", "fired A"]), $"fired {string.Join(", ", fired)}; {trace}");
        Assert.DoesNotContain("fired X", events);
        foreach (var name in new[] { "A", "B", "Y" })
        {
            Assert.True(events.Contains($"on-time {name} True"), $"{name} fired before its When: {trace}");
            Assert.True(events.Contains($"when-ok {name} True"), $"{name}'s When is off: {trace}");
        }
    }

    [Fact]
    public async Task CallSoon_runs_callbacks_after_the_current_turn_in_FIFO_order()
    {
        var (client, record) = await ConnectAsync();
        await using var disposeClient = client;
        await client.SendAsync("soon 1\nsoon 2\nsoon 3\nlater done 0\n");
        Assert.Equal("fired done", await client.ReadLineAsync());
        Assert.Equal(["soon 1", "soon 2", "soon 3"], record.Events.Where(e => e.StartsWith("soon")));
    }

    [Fact]
    public async Task Closing_the_connection_cancels_timers_and_tasks_before_ConnectionLost_runs()
    {
        var (client, record) = await ConnectAsync();
        await client.SendAsync("ticker\nlater never 3600000\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("tick") >= 3);
        await client.SendAsync("close\n");
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);

        var events = record.Events;
        Assert.Contains("ticker-ended", events);
        Assert.DoesNotContain("ran-after-CL", events);
        Assert.DoesNotContain("ticker-ended-after-CL", events);
        Assert.True(events.ToList().IndexOf("ticker-ended") < events.ToList().IndexOf("CL"));
        Assert.Contains("pending-timers-cancelled True", events);
        Assert.DoesNotContain("fired never", events);
        await client.DisposeAsync();
    }

    [Fact]
    public async Task A_failing_background_task_aborts_only_its_own_connection_with_its_exception()
    {
        var (healthy, healthyRecord) = await ConnectAsync();
        await using var disposeHealthy = healthy;
        var (failing, record) = await ConnectAsync();
        await using var disposeFailing = failing;

        await failing.SendAsync("ticker\nfail\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        try
        {
            await failing.ReadToEndAsync();
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        var exception = Assert.IsType<InvalidOperationException>(record.LostException);
        Assert.Equal("background failure", exception.Message);
        Assert.Equal(ConnectionCloseReason.ApplicationError, record.LostReason);
        Assert.DoesNotContain("ran-after-CL", record.Events);

        // The other connection is untouched.
        await healthy.SendAsync("later still-alive 0\n");
        Assert.Equal("fired still-alive", await healthy.ReadLineAsync());
        Assert.Equal(0, healthyRecord.Count("CL"));
    }

    [Fact]
    public async Task A_failing_CallSoon_callback_aborts_its_connection_with_its_exception()
    {
        var (client, record) = await ConnectAsync();
        await using var disposeClient = client;
        await client.SendAsync("fail-soon\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal("callback failure", Assert.IsType<InvalidOperationException>(record.LostException).Message);
    }
}
