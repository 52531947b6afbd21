using System.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The connection's clocks, checked by its server's heartbeat: the idle timeout, the first-data deadline and the
/// minimum data rates each way (Kestrel's <c>MinRequestBodyDataRate</c> and <c>MinResponseDataRate</c>, measured the
/// same way).
/// </summary>
/// <remarks>
/// The receive rate is timed only while the pump waits on the socket with an incomplete frame in hand, so neither a
/// slow grain nor a protocol that paused reading counts against the peer; raw listeners cannot tell an incomplete
/// message from a finished one and rely on the idle timeout and the connection limits. The send rate gives every byte
/// the gateway buffers for the peer the grace period plus its share at the minimum rate to reach the kernel.
/// </remarks>
internal sealed partial class GatewayConnection
{
    private readonly ConnectionClocks _clocks;
    private volatile bool _peerSentData;

    // Receive rate, written by the pump under _lock (read by the heartbeat under it): the incomplete frame's bytes, and
    // how long the pump has waited on the peer for it. The pump, their only writer, may read them without the lock.
    private long _rxPartial;
    private long _rxBytes;
    private long _rxWaited;
    private long _rxWaitingSince;

    // Send rate, guarded by _lock: when what is buffered now must have reached the kernel.
    private long _txDeadline;

    /// <summary>The limits one connection is held to, in milliseconds (0 = off) and bytes per millisecond.</summary>
    internal readonly record struct ConnectionClocks(long IdleMs, long FirstDataMs, double RxRate, long RxGraceMs, double TxRate, long TxGraceMs)
    {
        public static ConnectionClocks From(ProtocolListenerOptions o) => new(
            Ms(o.IdleTimeout),
            Ms(o.FirstDataTimeout),
            (o.MinReceiveDataRate ?? 0) / 1000,
            Ms(o.MinReceiveDataRateGracePeriod),
            (o.MinSendDataRate ?? 0) / 1000,
            Ms(o.MinSendDataRateGracePeriod));

        /// <summary>How often a heartbeat must tick to honour these clocks: a quarter of the shortest, within 50 ms to 1 s.</summary>
        public static TimeSpan? HeartbeatPeriod(ProtocolListenerOptions o)
        {
            var c = From(o);
            var shortest = new[] { c.IdleMs, c.FirstDataMs, c.RxRate > 0 ? c.RxGraceMs : 0, c.TxRate > 0 ? c.TxGraceMs : 0 }.Where(ms => ms > 0).DefaultIfEmpty(0).Min();
            return shortest == 0 ? null : TimeSpan.FromMilliseconds(Math.Clamp(shortest / 4, 50, 1000));
        }

        private static long Ms(TimeSpan t) => t == Timeout.InfiniteTimeSpan ? 0 : Math.Max(1, (long)t.TotalMilliseconds);
    }

    /// <summary>Checks every clock; closes or aborts the connection at the first one run out. Called by the heartbeat.</summary>
    /// <returns>The clock that ran out and why, for the heartbeat's log, or null.</returns>
    internal (ConnectionCloseReason Reason, string Detail)? CheckClocks(long now)
    {
        ConnectionCloseReason reason;
        string detail;
        var abort = false;
        lock (_lock)
        {
            if (_aborted)
            {
                return null;
            }

            var rxWaited = _rxWaited + (_rxWaitingSince == 0 ? 0 : now - _rxWaitingSince);
            if (_clocks.TxRate > 0 && _flow.Buffered > 0 && now > _txDeadline)
            {
                // Aborted, not closed: a close would wait for the very bytes the peer does not take. This holds while
                // closing too (a close flushes first, and would wait forever), and the reason replaces the close's.
                detail = $"The peer took {_flow.Buffered} buffered bytes slower than the minimum of {_clocks.TxRate * 1000:0.##} bytes/s.";
                _closeReason = ConnectionCloseReason.None;
                AbortLocked(ConnectionCloseReason.SendRateTooLow, detail);
                (reason, abort) = (ConnectionCloseReason.SendRateTooLow, true);
            }
            else if (_closeRequested || _serverClose is not null)
            {
                // Closing already (a close asked of the grain is on its way): the other clocks have done their part.
                return null;
            }
            else if (_clocks.RxRate > 0 && _rxPartial > 0 && rxWaited >= _clocks.RxGraceMs && _rxBytes < _clocks.RxRate * rxWaited)
            {
                (reason, detail) = (ConnectionCloseReason.ReceiveRateTooLow,
                    $"{_rxBytes} bytes of an incomplete frame in {rxWaited / 1000.0:0.#} s, under the minimum of {_clocks.RxRate * 1000:0.##} bytes/s.");
            }
            else if (_clocks.FirstDataMs > 0 && !_peerSentData && Stopwatch.GetElapsedTime(_startTimestamp).TotalMilliseconds > _clocks.FirstDataMs)
            {
                (reason, detail) = (ConnectionCloseReason.FirstDataTimeout, $"No byte from the peer within {TimeSpan.FromMilliseconds(_clocks.FirstDataMs)} of connecting.");
            }
            else if (_clocks.IdleMs > 0 && now - LastActivity > _clocks.IdleMs)
            {
                (reason, detail) = (ConnectionCloseReason.IdleTimeout, $"No byte either way for {TimeSpan.FromMilliseconds(_clocks.IdleMs)}.");
            }
            else
            {
                return null;
            }
        }

        if (abort)
        {
            WakeWriter();
        }
        else
        {
            // Through the grain, so what it wrote is flushed before the close.
            RequestClose(reason, detail);
        }

        return (reason, detail);
    }

    /// <summary>The pump is about to wait on the socket: time the wait if it holds an incomplete frame.</summary>
    private void StartReceiveWait()
    {
        if (_rxPartial > 0)
        {
            lock (_lock)
            {
                _rxWaitingSince = Environment.TickCount64;
            }
        }
    }

    /// <summary>
    /// After a framed read: <paramref name="consumed"/> bytes left the pipe as whole frames and
    /// <paramref name="partial"/> bytes of an incomplete frame stay in it.
    /// </summary>
    private void TrackIncompleteFrame(long consumed, long partial)
    {
        if (_clocks.RxRate <= 0 || (partial == 0 && _rxPartial == 0 && _rxWaitingSince == 0))
        {
            // The common case, whole frames only: nothing to time.
            return;
        }

        lock (_lock)
        {
            if (_rxWaitingSince != 0)
            {
                _rxWaited += Environment.TickCount64 - _rxWaitingSince;
                _rxWaitingSince = 0;
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
    }

    /// <summary>
    /// <paramref name="bytes"/> are about to be queued for the peer: a stall (bytes waiting for the kernel) starts with
    /// the grace period or their time at the minimum rate, whichever is longer; bytes queued during it add their time.
    /// </summary>
    private void ExtendSendDeadlineLocked(long bytes)
    {
        if (_clocks.TxRate > 0)
        {
            var time = (long)(bytes / _clocks.TxRate);
            _txDeadline = _flow.Buffered == 0 ? Environment.TickCount64 + Math.Max(_clocks.TxGraceMs, time) : _txDeadline + time;
        }
    }
}
