using OrleansProtocol.Gateway.Connections;

namespace OrleansProtocol.Tests;

/// <summary>
/// A connection's clocks on their own, at scripted times (milliseconds): each limit fires just past its time and not
/// a millisecond before, and a peer just inside a rate is left alone.
/// </summary>
[Trait("Category", "Fast")]
public sealed class ConnectionClockTests
{
    private static ConnectionClock Clock(long idle = 0, long firstData = 0, double rxRate = 0, long rxGrace = 0, double txRate = 0, long txGrace = 0) =>
        new(new ConnectionClock.Limits(idle, firstData, rxRate, rxGrace, txRate, txGrace), start: 1_000);

    [Fact]
    public void The_protocols_receive_timeout_counts_only_the_peers_bytes_and_not_a_pause_in_reading()
    {
        var clock = Clock();
        clock.SetProtocolReceiveTimeout(1_000, now: 1_000);
        clock.Touch(1_900); // a byte sent to the peer holds nothing off
        Assert.Null(clock.Check(now: 2_000, buffered: 0, sent: 0, closing: false));
        clock.PeerSentData(1_999);
        Assert.Null(clock.Check(now: 2_999, buffered: 0, sent: 0, closing: false));

        // Paused reading: nothing is read, so nothing counts against the peer until reading resumes.
        clock.ReadingPaused(true, now: 2_500);
        Assert.Null(clock.Check(now: 60_000, buffered: 0, sent: 0, closing: false));
        clock.ReadingPaused(false, now: 60_000);
        Assert.Null(clock.Check(now: 61_000, buffered: 0, sent: 0, closing: false));
        var expired = clock.Check(now: 61_001, buffered: 0, sent: 0, closing: false);
        Assert.Equal((ConnectionCloseReason.ReceiveTimeout, false), (expired?.Reason, expired?.Abort));

        clock.SetProtocolReceiveTimeout(0, now: 61_001);
        Assert.Null(clock.Check(now: 10_000_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void The_protocols_deadline_passes_at_its_time_whatever_the_peer_sends_and_is_cleared_or_restarted_by_the_protocol()
    {
        var clock = Clock();
        clock.SetProtocolReceiveDeadline(10_000, now: 1_000);
        clock.PeerSentData(10_999);
        Assert.Null(clock.Check(now: 11_000, buffered: 0, sent: 0, closing: false));
        Assert.Equal(ConnectionCloseReason.ReceiveDeadline, clock.Check(now: 11_001, buffered: 0, sent: 0, closing: false)?.Reason);

        clock.SetProtocolReceiveDeadline(10_000, now: 11_001);
        Assert.Null(clock.Check(now: 21_001, buffered: 0, sent: 0, closing: false));
        clock.SetProtocolReceiveDeadline(0, now: 21_001);
        Assert.Null(clock.Check(now: 10_000_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void The_idle_timeout_fires_only_after_its_time_without_a_byte_either_way()
    {
        var clock = Clock(idle: 5_000);
        Assert.Null(clock.Check(now: 6_000, buffered: 0, sent: 0, closing: false));
        Assert.Equal(ConnectionCloseReason.IdleTimeout, clock.Check(now: 6_001, buffered: 0, sent: 0, closing: false)?.Reason);

        clock.Touch(6_000);
        Assert.Null(clock.Check(now: 11_000, buffered: 0, sent: 0, closing: false));
        Assert.Equal(ConnectionCloseReason.IdleTimeout, clock.Check(now: 11_001, buffered: 0, sent: 0, closing: false)?.Reason);
    }

    [Fact]
    public void The_first_data_deadline_is_met_by_one_byte_and_otherwise_closes_not_aborts()
    {
        var silent = Clock(firstData: 2_000);
        Assert.Null(silent.Check(now: 3_000, buffered: 0, sent: 0, closing: false));
        var expired = silent.Check(now: 3_001, buffered: 0, sent: 0, closing: false);
        Assert.Equal((ConnectionCloseReason.FirstDataTimeout, false), (expired?.Reason, expired?.Abort));

        var talker = Clock(firstData: 2_000);
        talker.PeerSentData(0);
        Assert.Null(talker.Check(now: 1_000_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void A_peer_trickling_a_frame_below_the_receive_rate_is_closed_after_the_grace_and_one_just_above_is_not()
    {
        // 100 bytes/s = 0.1 bytes/ms, 1 s grace. The pump waits on the socket with part of a frame in hand.
        var slow = Clock(rxRate: 0.1, rxGrace: 1_000);
        var steady = Clock(rxRate: 0.1, rxGrace: 1_000);
        foreach (var (clock, bytesPerSecond) in new[] { (slow, 90), (steady, 110) })
        {
            clock.TrackIncompleteFrame(consumed: 0, partial: 10, now: 1_000);
            var partial = 10L;
            for (var second = 1; second <= 10; second++)
            {
                clock.StartReceiveWait(now: 1_000 + ((second - 1) * 1_000));
                partial += bytesPerSecond;
                clock.TrackIncompleteFrame(consumed: 0, partial: partial, now: 1_000 + (second * 1_000));
            }
        }

        Assert.Equal(ConnectionCloseReason.ReceiveRateTooLow, slow.Check(now: 11_000, buffered: 0, sent: 0, closing: false)?.Reason);
        Assert.Null(steady.Check(now: 11_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void Time_the_pump_spends_in_the_grain_does_not_count_against_the_receive_rate()
    {
        var clock = Clock(rxRate: 0.1, rxGrace: 1_000);
        clock.TrackIncompleteFrame(consumed: 0, partial: 10, now: 1_000);

        // No receive wait in progress: a minute in the grain (or paused reading) is not the peer's time.
        Assert.Null(clock.Check(now: 61_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void A_stalled_send_aborts_even_while_closing_and_a_reader_inside_the_rate_is_left_alone()
    {
        // 1,000 bytes/s = 1 byte/ms, 2 s grace: 10,000 bytes get max(2 s, 10 s) = 10 s.
        var clock = Clock(txRate: 1, txGrace: 2_000);
        clock.ExtendSendDeadline(bytes: 10_000, buffered: 0, now: 1_000);
        Assert.Null(clock.Check(now: 11_000, buffered: 4_000, sent: 6_000, closing: true));

        // Overdue: the first check only notes it (the clock may have jumped past a send not yet counted)...
        Assert.Null(clock.Check(now: 11_001, buffered: 4_000, sent: 6_000, closing: true));

        // ...progress since puts it off to the next check...
        Assert.Null(clock.Check(now: 11_500, buffered: 3_000, sent: 7_000, closing: true));

        // ...and two overdue checks with nothing sent between are a stall.
        var expired = clock.Check(now: 12_000, buffered: 3_000, sent: 7_000, closing: true);
        Assert.Equal((ConnectionCloseReason.SendRateTooLow, true), (expired?.Reason, expired?.Abort));

        // Nothing buffered: no deadline, however long.
        Assert.Null(clock.Check(now: 1_000_000, buffered: 0, sent: 0, closing: false));
    }

    [Fact]
    public void While_a_close_is_on_its_way_only_the_send_rate_still_applies()
    {
        var clock = Clock(idle: 1_000, firstData: 1_000);
        Assert.Null(clock.Check(now: 100_000, buffered: 0, sent: 0, closing: true));
        Assert.NotNull(clock.Check(now: 100_000, buffered: 0, sent: 0, closing: false));
    }

    [Theory]
    [InlineData(0, 0, null)]
    [InlineData(2_000, 0, 500)]
    [InlineData(100, 0, 50)]
    [InlineData(60_000, 0, 1_000)]
    [InlineData(60_000, 1_000, 250)]
    public void The_heartbeat_ticks_at_a_quarter_of_the_shortest_clock_within_50_ms_and_1_s(int idleMs, int firstDataMs, int? expectedMs)
    {
        var options = new OrleansProtocol.Gateway.ProtocolListenerOptions
        {
            IdleTimeout = idleMs == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(idleMs),
            FirstDataTimeout = firstDataMs == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(firstDataMs),
            MinReceiveDataRate = null,
            MinSendDataRate = null,
        };
        Assert.Equal(expectedMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null, ConnectionClock.Limits.HeartbeatPeriod(options));
    }

    [Fact]
    public void A_deadline_counted_from_the_accept_has_what_is_left_of_it_and_never_less_than_zero()
    {
        var clock = Clock();
        Assert.Equal(TimeSpan.FromSeconds(10), clock.Remaining(TimeSpan.FromSeconds(10), now: 1_000));
        Assert.Equal(TimeSpan.FromSeconds(4), clock.Remaining(TimeSpan.FromSeconds(10), now: 7_000));
        Assert.Equal(TimeSpan.Zero, clock.Remaining(TimeSpan.FromSeconds(10), now: 60_000));
        Assert.Equal(Timeout.InfiniteTimeSpan, clock.Remaining(Timeout.InfiniteTimeSpan, now: 60_000));
    }
}
