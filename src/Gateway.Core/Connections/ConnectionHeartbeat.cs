using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// A server's heartbeat: runs every connection's clocks (idle, first data, data rates;
/// <see cref="GatewayConnection.CheckClocks"/>), ticking at a quarter of the shortest of them, once a second at most,
/// as Kestrel's heartbeat does. Each connection acts on what its clock says; the heartbeat only logs.
/// </summary>
internal sealed class ConnectionHeartbeat(string listener, IEnumerable<KeyValuePair<string, GatewayConnection>> connections, TimeProvider time, ILogger logger)
{
    private volatile bool _stopped;

    /// <summary>
    /// Starts ticking until stopped or <paramref name="keepGoing"/> says no: at the pace of <paramref name="options"/>'
    /// clocks, or once a second when it sets none (a protocol may set its own receive clocks on any connection).
    /// </summary>
    public void Start(ProtocolListenerOptions options, Func<bool> keepGoing) =>
        _ = RunAsync(ConnectionClock.Limits.HeartbeatPeriod(options) ?? TimeSpan.FromSeconds(1), keepGoing);

    /// <summary>No tick after this one (the server is shutting down; the drain has its own deadline).</summary>
    public void Stop() => _stopped = true;

    /// <summary>One tick now, at the current time of the gateway's clock.</summary>
    public void Check()
    {
        var now = ConnectionClock.Now(time);
        // Enumerating the live dictionary takes no lock and no snapshot; a connection added meanwhile waits a tick.
        foreach (var (_, connection) in connections)
        {
            if (connection.CheckClocks(now) is not { } expired)
            {
                continue;
            }

            var (reason, detail) = expired;

            // An idle close is routine (Debug). The others are limits hit, sampled into warnings per kind.
            var count = reason == ConnectionCloseReason.IdleTimeout ? 0 : OrleansProtocol.Diagnostics.LogSampling.Next(listener, reason.ToString());
            if (count > 0 && GatewayLog.IsSampled(count))
            {
                GatewayLog.ClockLimitHit(logger, connection.Id, reason, detail, count);
            }
            else
            {
                GatewayLog.ClockExpired(logger, connection.Id, reason, detail);
            }
        }
    }

    private async Task RunAsync(TimeSpan period, Func<bool> keepGoing)
    {
        using var timer = new PeriodicTimer(period, time);
        while (await timer.WaitForNextTickAsync() && !_stopped && keepGoing())
        {
            Check();
        }
    }
}
