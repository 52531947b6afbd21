using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace OrleansProtocol.Gateway.Diagnostics;

/// <summary>
/// The gateway's instruments, on one meter (<see cref="MeterName"/>) made through <see cref="IMeterFactory"/>. Tags
/// name the listener, never a connection id or an address (cardinality). Export with OpenTelemetry's
/// <c>AddMeter("OrleansProtocol.Gateway")</c>.
/// </summary>
public sealed class GatewayMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "OrleansProtocol.Gateway";

    private readonly UpDownCounter<long> _activeConnections;
    private readonly Histogram<double> _connectionDuration;
    private readonly Counter<long> _rejectedConnections;
    private readonly Counter<long> _bytes;
    private readonly UpDownCounter<long> _pausedConnections;
    private readonly Histogram<double> _grainCallDuration;
    private readonly Counter<long> _framesOverLimit;
    private readonly Counter<long> _groupMessages;
    private readonly UpDownCounter<long> _groupMembers;
    private readonly UpDownCounter<long> _hibernatedConnections;

    /// <summary>Created by dependency injection.</summary>
    public GatewayMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _activeConnections = meter.CreateUpDownCounter<long>("orleansprotocol.active_connections", "{connection}", "Connections currently open.");
        _connectionDuration = meter.CreateHistogram<double>("orleansprotocol.connection.duration", "s", "How long connections lasted, by close reason.");
        _rejectedConnections = meter.CreateCounter<long>("orleansprotocol.rejected_connections", "{connection}", "Connections refused at accept, by reason.");
        _bytes = meter.CreateCounter<long>("orleansprotocol.io.bytes", "By", "Bytes received from and sent to peers.");
        _pausedConnections = meter.CreateUpDownCounter<long>("orleansprotocol.paused_connections", "{connection}", "Connections paused, by direction (read: the protocol paused reading; write: over the high-water mark).");
        _grainCallDuration = meter.CreateHistogram<double>("orleansprotocol.grain_call.duration", "s", "Duration of the gateway's calls to protocol grains, by callback.");
        _framesOverLimit = meter.CreateCounter<long>("orleansprotocol.frames_over_limit", "{frame}", "Frames refused for exceeding the maximum frame size.");

        // The process's, not the gateway's alone: per request it is the figure the data path is tuned on (docs/performance.md).
        _groupMessages = meter.CreateCounter<long>("orleansprotocol.group.messages", "{message}", "Group messages for this silo's members, by outcome (delivered; dropped: behind or unframeable; closed: the member was closed for falling behind).");
        _hibernatedConnections = meter.CreateUpDownCounter<long>("orleansprotocol.hibernated_connections", "{connection}", "Connections whose grain is hibernating (no activation; its state at the gateway).");
        _groupMembers = meter.CreateUpDownCounter<long>("orleansprotocol.group.members", "{membership}", "Group memberships of this silo's connections.");
        meter.CreateObservableCounter("orleansprotocol.process.allocated_bytes", static () => GC.GetTotalAllocatedBytes(), "By", "Bytes allocated on the managed heap by the whole process since it started.");
    }

    internal void ConnectionOpened(string listener) => _activeConnections.Add(1, new KeyValuePair<string, object?>("orleansprotocol.listener", listener));

    internal void ConnectionClosed(string listener, ConnectionCloseReason reason, TimeSpan duration)
    {
        var tags = new TagList
        {
            { "orleansprotocol.listener", listener },
            { "orleansprotocol.close_reason", reason.ToString() },
        };
        if (!reason.IsClean())
        {
            tags.Add("error.type", reason.ToString());
        }

        _activeConnections.Add(-1, new KeyValuePair<string, object?>("orleansprotocol.listener", listener));
        _connectionDuration.Record(duration.TotalSeconds, tags);
    }

    internal void ConnectionRejected(string listener, string reason) =>
        _rejectedConnections.Add(1, new KeyValuePair<string, object?>("orleansprotocol.listener", listener), new KeyValuePair<string, object?>("orleansprotocol.reason", reason));

    internal void BytesReceived(string listener, long count) =>
        _bytes.Add(count, new KeyValuePair<string, object?>("orleansprotocol.listener", listener), new KeyValuePair<string, object?>("network.io.direction", "receive"));

    internal void BytesSent(string listener, long count) =>
        _bytes.Add(count, new KeyValuePair<string, object?>("orleansprotocol.listener", listener), new KeyValuePair<string, object?>("network.io.direction", "transmit"));

    internal void Paused(string listener, string direction, int change) =>
        _pausedConnections.Add(change, new KeyValuePair<string, object?>("orleansprotocol.listener", listener), new KeyValuePair<string, object?>("orleansprotocol.direction", direction));

    internal void GrainCall(string listener, string callback, long startTimestamp)
    {
        if (!_grainCallDuration.Enabled)
        {
            return;
        }

        _grainCallDuration.Record(
            Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds,
            new KeyValuePair<string, object?>("orleansprotocol.listener", listener),
            new KeyValuePair<string, object?>("orleansprotocol.callback", callback));
    }

    internal void GroupMessages(string outcome, int count)
    {
        if (count > 0)
        {
            _groupMessages.Add(count, new KeyValuePair<string, object?>("orleansprotocol.outcome", outcome));
        }
    }

    internal void GroupMembers(int change) => _groupMembers.Add(change);

    internal void Hibernated(string listener, int change) =>
        _hibernatedConnections.Add(change, new KeyValuePair<string, object?>("orleansprotocol.listener", listener));

    internal void FrameOverLimit(string listener) =>
        _framesOverLimit.Add(1, new KeyValuePair<string, object?>("orleansprotocol.listener", listener));

    private long _observerReferences;

    /// <summary>
    /// Observer references the silo's connections hold (one per connection and protocol). Not a meter instrument: the
    /// give-back tests assert it returns to zero.
    /// </summary>
    internal long ObserverReferences => Interlocked.Read(ref _observerReferences);

    internal void ObserverReference(int delta) => Interlocked.Add(ref _observerReferences, delta);
}
