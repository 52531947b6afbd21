using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace OrleansProtocol.Gateway.Diagnostics;

/// <summary>
/// This silo's gateway meter (<see cref="GatewayMetrics.MeterName"/>) summed per listener since the silo started: open,
/// accepted, refused and closed connections (by reason), bytes each way and paused connections. What the live view
/// shows; any exporter sees the same measurements.
/// </summary>
/// <remarks>
/// Listens only to the meter made by this silo's <see cref="IMeterFactory"/>, so several silos in one process each
/// count their own. Resolve it before the silo starts, or it misses what came before.
/// </remarks>
public sealed class GatewayTotals : IDisposable
{
    private static readonly HashSet<string> Counted = new(StringComparer.Ordinal)
    {
        "orleansprotocol.active_connections",
        "orleansprotocol.connection.duration",
        "orleansprotocol.rejected_connections",
        "orleansprotocol.io.bytes",
        "orleansprotocol.paused_connections",
        "orleansprotocol.hibernated_connections",
    };

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, Counts> _listeners = new(StringComparer.Ordinal);

    /// <summary>Starts listening to the gateway meter of <paramref name="meterFactory"/>.</summary>
    public GatewayTotals(IMeterFactory meterFactory)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            // Only what the totals count: enabling the per-call histogram would make every read record it, exporter or not.
            if (instrument.Meter.Name == GatewayMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, meterFactory)
                && Counted.Contains(instrument.Name))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument.Name, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument.Name, 1, tags));
        _listener.Start();
    }

    /// <summary>
    /// The totals of every listener seen so far (outbound connections under <c>outbound</c>), and of
    /// <paramref name="listeners"/> (zeros for one that has had no connection yet).
    /// </summary>
    public IReadOnlyList<ListenerTotals> Snapshot(IEnumerable<string>? listeners = null)
    {
        foreach (var name in listeners ?? [])
        {
            _listeners.GetOrAdd(name, _ => new Counts());
        }

        return [.. _listeners.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => l.Value.Snapshot(l.Key))];
    }

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();

    private void Record(string instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        string? listener = null, reason = null, direction = null;
        foreach (var tag in tags)
        {
            switch (tag.Key)
            {
                case "orleansprotocol.listener":
                    listener = tag.Value as string;
                    break;
                case "orleansprotocol.close_reason" or "orleansprotocol.reason":
                    reason = tag.Value as string;
                    break;
                case "network.io.direction" or "orleansprotocol.direction":
                    direction = tag.Value as string;
                    break;
            }
        }

        if (listener is null)
        {
            return;
        }

        // Outbound connections are named by their target; one row for all of them.
        var counts = _listeners.GetOrAdd(listener.StartsWith("outbound", StringComparison.Ordinal) ? "outbound" : listener, _ => new Counts());
        switch (instrument)
        {
            case "orleansprotocol.active_connections":
                Interlocked.Add(ref counts.Open, value);
                if (value > 0)
                {
                    Interlocked.Add(ref counts.Accepted, value);
                }

                break;
            case "orleansprotocol.connection.duration":
                Interlocked.Increment(ref counts.Closed);
                counts.CloseReasons.AddOrUpdate(reason ?? "None", 1, (_, n) => n + 1);
                break;
            case "orleansprotocol.rejected_connections":
                Interlocked.Add(ref counts.Refused, value);
                counts.Refusals.AddOrUpdate(reason ?? "unknown", value, (_, n) => n + value);
                break;
            case "orleansprotocol.io.bytes" when direction == "receive":
                Interlocked.Add(ref counts.BytesReceived, value);
                break;
            case "orleansprotocol.io.bytes":
                Interlocked.Add(ref counts.BytesSent, value);
                break;
            case "orleansprotocol.paused_connections" when direction == "read":
                Interlocked.Add(ref counts.PausedReading, value);
                break;
            case "orleansprotocol.paused_connections":
                Interlocked.Add(ref counts.PausedWriting, value);
                break;
            case "orleansprotocol.hibernated_connections":
                Interlocked.Add(ref counts.Hibernated, value);
                break;
        }
    }

    private sealed class Counts
    {
        public long Open;
        public long Accepted;
        public long Refused;
        public long Closed;
        public long BytesReceived;
        public long BytesSent;
        public long PausedReading;
        public long PausedWriting;
        public long Hibernated;

        public ConcurrentDictionary<string, long> CloseReasons { get; } = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, long> Refusals { get; } = new(StringComparer.Ordinal);

        public ListenerTotals Snapshot(string name) => new(
            name,
            Interlocked.Read(ref Open),
            Interlocked.Read(ref Accepted),
            Interlocked.Read(ref Refused),
            Interlocked.Read(ref Closed),
            Interlocked.Read(ref BytesReceived),
            Interlocked.Read(ref BytesSent),
            Interlocked.Read(ref PausedReading),
            Interlocked.Read(ref PausedWriting),
            new SortedDictionary<string, long>(CloseReasons, StringComparer.Ordinal),
            new SortedDictionary<string, long>(Refusals, StringComparer.Ordinal))
        {
            Hibernated = Interlocked.Read(ref Hibernated),
        };
    }
}

/// <summary>One listener's totals since the silo started (see <see cref="GatewayTotals"/>).</summary>
/// <param name="Listener">The listener's name.</param>
/// <param name="Open">Connections open now.</param>
/// <param name="Accepted">Connections taken on (refused ones excluded).</param>
/// <param name="Refused">Connections refused at accept (limits).</param>
/// <param name="Closed">Connections ended.</param>
/// <param name="BytesReceived">Bytes read from peers.</param>
/// <param name="BytesSent">Bytes sent to peers.</param>
/// <param name="PausedReading">Connections whose protocol paused reading, now.</param>
/// <param name="PausedWriting">Connections over their write buffer's high-water mark, now.</param>
/// <param name="CloseReasons">Ended connections by <see cref="ConnectionCloseReason"/>.</param>
/// <param name="Refusals">Refused connections by reason.</param>
public sealed record ListenerTotals(
    string Listener,
    long Open,
    long Accepted,
    long Refused,
    long Closed,
    long BytesReceived,
    long BytesSent,
    long PausedReading,
    long PausedWriting,
    IReadOnlyDictionary<string, long> CloseReasons,
    IReadOnlyDictionary<string, long> Refusals)
{
    /// <summary>Connections hibernated now: their grains sleep, their state is at the gateway.</summary>
    public long Hibernated { get; init; }
}
