namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// One connection's clocks: the idle timeout, the first-data deadline and the minimum data rates each way (Kestrel's
/// <c>MinRequestBodyDataRate</c> and <c>MinResponseDataRate</c>, measured the same way), and the protocol's own receive
/// timeout and deadline. Every method takes the time
/// (<see cref="Now"/>, milliseconds on the gateway's <see cref="TimeProvider"/>), so the part is driven by scripted
/// times in tests and by the listener's heartbeat in the gateway.
/// </summary>
/// <remarks>
/// The receive rate is timed only while the pump waits on the socket with an incomplete frame in hand, so neither a
/// slow grain nor a protocol that paused reading counts against the peer; raw listeners cannot tell an incomplete
/// message from a finished one and rely on the idle timeout and the connection limits. The send rate gives every byte
/// the gateway buffers for the peer the grace period plus its share at the minimum rate to reach the kernel.
/// The clock owns its state, as Kestrel's <c>TimeoutControl</c> does, and calls nobody: the heartbeat acts on what
/// <see cref="Check"/> returns, outside every lock. The receive figures (written by the pump) and the check share the
/// clock's lock, taken only while the receive rate is timed; the send deadline has one writer (the writer part, under
/// its lock) and is read by the check; activity stamps are single values.
/// </remarks>
internal sealed class ConnectionClock(ConnectionClock.Limits limits, long start)
{
    private readonly Lock _lock = new();
    private readonly long _start = start;
    private long _lastActivity = start;
    private bool _peerSentData;

    // Receive rate: the incomplete frame's bytes, and how long the pump has waited on the peer for it.
    private long _rxPartial;
    private long _rxBytes;
    private long _rxWaited;
    private long _rxWaitingSince = -1;

    // Send rate: when what is buffered now must have reached the kernel, and the bytes sent when a check first found
    // it passed (-1: none did).
    private long _txDeadline;
    private long _txOverdueAtSent = -1;

    // The protocol's own clocks (Transport.SetReceiveTimeout / SetReceiveDeadline), in milliseconds, 0 = off; set by a
    // batch under the connection's lock and read by the check under this one's. The last byte from the peer is a
    // single value written by the pump.
    private long _lastReceived = start;
    private long _protocolRxTimeoutMs;
    private long _protocolDeadlineMs;
    private long _protocolDeadlineAt;
    private bool _readingPaused;

    /// <summary>The limits one connection is held to, in milliseconds (0 = off) and bytes per millisecond.</summary>
    internal readonly record struct Limits(long IdleMs, long FirstDataMs, double RxRate, long RxGraceMs, double TxRate, long TxGraceMs, long SleepMs = 0)
    {
        public static Limits From(ProtocolListenerOptions o) => new(
            Ms(o.IdleTimeout),
            Ms(o.FirstDataTimeout),
            (o.MinReceiveDataRate ?? 0) / 1000,
            Ms(o.MinReceiveDataRateGracePeriod),
            (o.MinSendDataRate ?? 0) / 1000,
            Ms(o.MinSendDataRateGracePeriod),
            Ms(o.HibernateAfter));

        /// <summary>Whether the receive rate is timed at all (the pump skips the bookkeeping otherwise).</summary>
        public bool TimesReceiveRate => RxRate > 0;

        /// <summary>How often a heartbeat must tick to honour these clocks: a quarter of the shortest, within 50 ms to 1 s.</summary>
        public static TimeSpan? HeartbeatPeriod(ProtocolListenerOptions o)
        {
            var c = From(o);
            var shortest = new[] { c.IdleMs, c.FirstDataMs, c.RxRate > 0 ? c.RxGraceMs : 0, c.TxRate > 0 ? c.TxGraceMs : 0, c.SleepMs }.Where(ms => ms > 0).DefaultIfEmpty(0).Min();
            return shortest == 0 ? null : TimeSpan.FromMilliseconds(Math.Clamp(shortest / 4, 50, 1000));
        }

        private static long Ms(TimeSpan t) => t == Timeout.InfiniteTimeSpan ? 0 : Math.Max(1, (long)t.TotalMilliseconds);
    }

    /// <summary>Milliseconds on <paramref name="time"/>'s monotonic clock: the unit of every time this part takes.</summary>
    public static long Now(TimeProvider time) => (long)(time.GetTimestamp() * 1000.0 / time.TimestampFrequency);

    /// <summary>When the connection was accepted.</summary>
    public long Start => _start;

    /// <summary>What is left at <paramref name="now"/> of <paramref name="limit"/> counted from <see cref="Start"/> (zero once it has passed).</summary>
    public TimeSpan Remaining(TimeSpan limit, long now) => limit == Timeout.InfiniteTimeSpan
        ? limit
        : limit - TimeSpan.FromMilliseconds(Math.Min(now - _start, (long)limit.TotalMilliseconds));

    /// <summary>When a byte last went either way.</summary>
    public long LastActivity => Volatile.Read(ref _lastActivity);

    /// <summary>A byte went either way.</summary>
    public void Touch(long now) => Volatile.Write(ref _lastActivity, now);

    /// <summary>The peer sent bytes (the first-data deadline is met, the protocol's receive timeout starts again).</summary>
    public void PeerSentData(long now)
    {
        Volatile.Write(ref _peerSentData, true);
        Volatile.Write(ref _lastReceived, now);
    }

    /// <summary>The protocol's receive timeout (<paramref name="ms"/>, 0 = off), counted from now or the peer's next byte.</summary>
    public void SetProtocolReceiveTimeout(long ms, long now)
    {
        lock (_lock)
        {
            (_protocolRxTimeoutMs, _lastReceived) = (ms, now);
        }
    }

    /// <summary>The protocol's deadline: <paramref name="ms"/> from <paramref name="now"/>, or cleared (0).</summary>
    public void SetProtocolReceiveDeadline(long ms, long now)
    {
        lock (_lock)
        {
            (_protocolDeadlineMs, _protocolDeadlineAt) = (ms, ms == 0 ? 0 : now + ms);
        }
    }

    /// <summary>
    /// The protocol paused or resumed reading: nothing is read meanwhile, so its receive timeout does not count the
    /// pause against the peer and starts again at the resume.
    /// </summary>
    public void ReadingPaused(bool paused, long now)
    {
        lock (_lock)
        {
            (_readingPaused, _lastReceived) = (paused, paused ? _lastReceived : now);
        }
    }

    /// <summary>The pump is about to wait on the socket: the wait counts against the peer if it holds an incomplete frame.</summary>
    public void StartReceiveWait(long now)
    {
        if (_rxPartial > 0 && limits.TimesReceiveRate)
        {
            lock (_lock)
            {
                _rxWaitingSince = now;
            }
        }
    }

    /// <summary>Bytes of the incomplete frame the pump is waiting on the peer for, or -1 when it is not (tests).</summary>
    public long AwaitedIncompleteFrame
    {
        get
        {
            lock (_lock)
            {
                return _rxPartial > 0 && _rxWaitingSince >= 0 ? _rxPartial : -1;
            }
        }
    }

    /// <summary>
    /// After a framed read: <paramref name="consumed"/> bytes left the pipe as whole frames and
    /// <paramref name="partial"/> bytes of an incomplete frame stay in it. Nothing to do in the common case (the
    /// receive rate is not timed, or no frame is incomplete): the pump is the only writer of these figures.
    /// </summary>
    public void TrackIncompleteFrame(long consumed, long partial, long now)
    {
        if (!limits.TimesReceiveRate || (partial == 0 && _rxPartial == 0 && _rxWaitingSince < 0))
        {
            return;
        }

        lock (_lock)
        {
            TrackIncompleteFrameLocked(consumed, partial, now);
        }
    }

    private void TrackIncompleteFrameLocked(long consumed, long partial, long now)
    {
        if (_rxWaitingSince >= 0)
        {
            _rxWaited += now - _rxWaitingSince;
            _rxWaitingSince = -1;
        }

        if (partial == 0)
        {
            (_rxBytes, _rxWaited) = (0, 0);
        }
        else if (_rxPartial == 0)
        {
            // A new incomplete frame: its clock starts with the bytes already here.
            (_rxBytes, _rxWaited) = (partial, 0);
        }
        else
        {
            _rxBytes += consumed + partial - _rxPartial;
        }

        _rxPartial = partial;
    }

    /// <summary>
    /// <paramref name="bytes"/> are about to be queued for the peer, on top of <paramref name="buffered"/>: a stall
    /// (bytes waiting for the kernel) starts with the grace period or their time at the minimum rate, whichever is
    /// longer; bytes queued during it add their time.
    /// </summary>
    public void ExtendSendDeadline(long bytes, long buffered, long now)
    {
        if (limits.TxRate > 0)
        {
            var time = (long)(bytes / limits.TxRate);
            Volatile.Write(ref _txDeadline, buffered == 0 ? now + Math.Max(limits.TxGraceMs, time) : _txDeadline + time);
        }
    }

    /// <summary>
    /// Checks every clock at <paramref name="now"/>, with <paramref name="buffered"/> bytes waiting for the peer and
    /// <paramref name="sent"/> sent so far; <paramref name="closing"/> when a close is already on its way (then only the
    /// send rate still applies). A send stall is reported by the second check that finds it, with no progress between.
    /// </summary>
    /// <returns>The first clock run out, why, and whether the connection must be aborted rather than closed; or null.</returns>
    public (ConnectionCloseReason Reason, string Detail, bool Abort)? Check(long now, long buffered, long sent, bool closing)
    {
        lock (_lock)
        {
            return CheckLocked(now, buffered, sent, closing);
        }
    }

    private (ConnectionCloseReason Reason, string Detail, bool Abort)? CheckLocked(long now, long buffered, long sent, bool closing)
    {
        var rxWaited = _rxWaited + (_rxWaitingSince < 0 ? 0 : now - _rxWaitingSince);
        if (limits.TxRate > 0 && buffered > 0 && now > Volatile.Read(ref _txDeadline))
        {
            // Overdue twice with no byte sent in between: a stall. Once is not enough, as a clock that jumps (a fake
            // one in a test, a long pause) can find bytes the kernel has taken whose send has not yet been counted.
            if (_txOverdueAtSent == sent)
            {
                // Aborted, not closed: a close would wait for the very bytes the peer does not take. This holds while
                // closing too (a close flushes first, and would wait forever).
                return (ConnectionCloseReason.SendRateTooLow, $"The peer took {buffered} buffered bytes slower than the minimum of {limits.TxRate * 1000:0.##} bytes/s.", true);
            }

            _txOverdueAtSent = sent;
        }
        else
        {
            _txOverdueAtSent = -1;
        }

        if (closing)
        {
            // A close asked of the grain is on its way: the other clocks have done their part.
            return null;
        }

        if (_protocolDeadlineAt > 0 && now > _protocolDeadlineAt)
        {
            return (ConnectionCloseReason.ReceiveDeadline, $"The protocol's receive deadline of {TimeSpan.FromMilliseconds(_protocolDeadlineMs)} passed.", false);
        }

        if (_protocolRxTimeoutMs > 0 && !_readingPaused && now - Volatile.Read(ref _lastReceived) > _protocolRxTimeoutMs)
        {
            return (ConnectionCloseReason.ReceiveTimeout, $"No byte from the peer for {TimeSpan.FromMilliseconds(_protocolRxTimeoutMs)} (the protocol's receive timeout).", false);
        }

        if (limits.RxRate > 0 && _rxPartial > 0 && rxWaited >= limits.RxGraceMs && _rxBytes < limits.RxRate * rxWaited)
        {
            return (ConnectionCloseReason.ReceiveRateTooLow,
                $"{_rxBytes} bytes of an incomplete frame in {rxWaited / 1000.0:0.#} s, under the minimum of {limits.RxRate * 1000:0.##} bytes/s.", false);
        }

        if (limits.FirstDataMs > 0 && !Volatile.Read(ref _peerSentData) && now - _start > limits.FirstDataMs)
        {
            return (ConnectionCloseReason.FirstDataTimeout, $"No byte from the peer within {TimeSpan.FromMilliseconds(limits.FirstDataMs)} of connecting.", false);
        }

        if (limits.IdleMs > 0 && now - LastActivity > limits.IdleMs)
        {
            return (ConnectionCloseReason.IdleTimeout, $"No byte either way for {TimeSpan.FromMilliseconds(limits.IdleMs)}.", false);
        }

        return null;
    }
}
