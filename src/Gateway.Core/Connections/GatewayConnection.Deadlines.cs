namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The connection's clocks (<see cref="ConnectionClock"/>), checked by its server's heartbeat, on the gateway's
/// <see cref="TimeProvider"/>.
/// </summary>
internal sealed partial class GatewayConnection
{
    private readonly TimeProvider _time;
    private readonly ConnectionClock _clock;

    /// <summary>Now, in the clock's milliseconds.</summary>
    private long Now => ConnectionClock.Now(_time);

    /// <summary>When a byte last went either way (<see cref="ConnectionClock.Now"/>), for the idle timeout.</summary>
    public long LastActivity => _clock.LastActivity;

    /// <summary>Checks every clock; closes or aborts the connection at the first one run out. Called by the heartbeat.</summary>
    /// <returns>The clock that ran out and why, for the heartbeat's log, or null.</returns>
    internal (ConnectionCloseReason Reason, string Detail)? CheckClocks(long now)
    {
        (ConnectionCloseReason Reason, string Detail, bool Abort) expired;
        lock (_lock)
        {
            if (_aborted || _clock.Check(now, _flow.Buffered, BytesSent, closing: _closeRequested || _serverClose is not null) is not { } ranOut)
            {
                return null;
            }

            expired = ranOut;
            if (expired.Abort)
            {
                // The send rate: the reason replaces a close's that was waiting for the very bytes the peer does not take.
                _closeReason = ConnectionCloseReason.None;
                AbortLocked(expired.Reason, expired.Detail);
            }
        }

        if (expired.Abort)
        {
            WakeWriter();
        }
        else
        {
            // Through the grain, so what it wrote is flushed before the close.
            RequestClose(expired.Reason, expired.Detail);
        }

        return (expired.Reason, expired.Detail);
    }

    /// <summary>Bytes of an incomplete frame the pump is waiting on the peer for, or -1 (tests synchronise on it).</summary>
    internal long AwaitedIncompleteFrame
    {
        get
        {
            lock (_lock)
            {
                return _clock.AwaitedIncompleteFrame;
            }
        }
    }

    /// <summary>The pump is about to wait on the socket: time the wait if it holds an incomplete frame.</summary>
    private void StartReceiveWait()
    {
        // The pump is the clock's only writer of the receive figures, so it may look without the lock.
        if (_clock.TracksRead(partial: 0))
        {
            lock (_lock)
            {
                _clock.StartReceiveWait(Now);
            }
        }
    }

    /// <summary>
    /// After a framed read: <paramref name="consumed"/> bytes left the pipe as whole frames and
    /// <paramref name="partial"/> bytes of an incomplete frame stay in it.
    /// </summary>
    private void TrackIncompleteFrame(long consumed, long partial)
    {
        if (_clock.TracksRead(partial))
        {
            lock (_lock)
            {
                _clock.TrackIncompleteFrame(consumed, partial, Now);
            }
        }
    }

    /// <summary>
    /// A token cancelled when <paramref name="limit"/> has passed since the accept (PROXY header, TLS handshake): counted
    /// from the accept, not from when this task got to run; already cancelled when the limit has passed.
    /// </summary>
    private CancellationTokenSource DeadlineFromAccept(TimeSpan limit)
    {
        var left = _clock.Remaining(limit, Now);
        var deadline = new CancellationTokenSource(left == TimeSpan.Zero ? Timeout.InfiniteTimeSpan : left, _time);
        if (left == TimeSpan.Zero)
        {
            // A zero delay would wait for the clock's next move on some clocks (a fake one); it is due now.
            deadline.Cancel();
        }

        return deadline;
    }

    /// <summary><paramref name="bytes"/> are about to be queued for the peer: the send-rate deadline moves.</summary>
    private void ExtendSendDeadlineLocked(long bytes) => _clock.ExtendSendDeadline(bytes, _flow.Buffered, Now);
}
