using OrleansProtocol.Gateway.Connections;

namespace OrleansProtocol.Tests;

/// <summary>
/// The gateway's write flow control on its own: asyncio's watermarks (pause strictly over high, resume at or below
/// low), strict alternation under any sequence of writes and sends, the limits a protocol sets, the hard cap.
/// </summary>
[Trait("Category", "Fast")]
public sealed class WriteFlowTests
{
    [Fact]
    public void Pauses_only_strictly_over_high_and_resumes_only_at_or_below_low()
    {
        var flow = new WriteFlow(cap: null);
        flow.Add(WriteBufferDefaults.High);
        Assert.Null(flow.Update());

        flow.Add(1);
        Assert.True(flow.Update());
        Assert.True(flow.Paused);
        Assert.Null(flow.Update());

        flow.Sent(flow.Buffered - WriteBufferDefaults.Low - 1);
        Assert.Null(flow.Update());

        flow.Sent(1);
        Assert.Equal(WriteBufferDefaults.Low, flow.Buffered);
        Assert.False(flow.Update());
        Assert.False(flow.Paused);
    }

    [Fact]
    public void Notifications_alternate_strictly_under_10000_random_writes_and_sends()
    {
        var random = new Random(12345);
        var flow = new WriteFlow(cap: null);
        flow.SetLimits(high: 1000, low: 250);
        bool? last = null;
        var notifications = 0;
        for (var step = 0; step < 10_000; step++)
        {
            if (random.Next(2) == 0)
            {
                flow.Add(random.Next(1, 400));
            }
            else if (flow.Buffered > 0)
            {
                flow.Sent(random.Next(1, (int)Math.Min(flow.Buffered, 400) + 1));
            }

            if (flow.Update() is { } pause)
            {
                notifications++;
                Assert.NotEqual(last, pause);
                Assert.True(pause ? flow.Buffered > 1000 : flow.Buffered <= 250);
                last = pause;
            }
        }

        Assert.True(notifications > 10, $"only {notifications} notifications: the walk did not cross the marks");
    }

    [Fact]
    public void New_limits_apply_at_the_next_update_and_a_new_protocol_starts_from_the_defaults_unpaused()
    {
        var flow = new WriteFlow(cap: null);
        flow.Add(2000);
        Assert.Null(flow.Update());

        flow.SetLimits(high: 1000, low: 100);
        Assert.True(flow.Update());

        flow.Restart();
        Assert.False(flow.Paused);
        Assert.Equal((WriteBufferDefaults.High, WriteBufferDefaults.Low), (flow.High, flow.Low));
        Assert.Equal(2000, flow.Buffered);
        Assert.Null(flow.Update());
    }

    [Fact]
    public void The_cap_is_over_only_strictly_above_it_and_the_peak_is_kept()
    {
        var flow = new WriteFlow(cap: 1000);
        flow.Add(1000);
        Assert.False(flow.OverCap);
        flow.Add(1);
        Assert.True(flow.OverCap);
        flow.Sent(1001);
        Assert.False(flow.OverCap);
        Assert.Equal(1001, flow.Peak);

        var uncapped = new WriteFlow(cap: null);
        uncapped.Add(long.MaxValue / 2);
        Assert.False(uncapped.OverCap);
    }
}
