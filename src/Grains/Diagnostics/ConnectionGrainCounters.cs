using System.Collections.Concurrent;

namespace OrleansProtocol.Diagnostics;

/// <summary>
/// What this silo's connection grains hold, per listener: live connections, watches on a gateway's silo, armed timers
/// and running tasks. Each is taken and given back by the grain; the give-back tests drive thousands of connections
/// through every path (refused, aborted, upgraded, drained) and assert each returns to zero. Registered per silo by
/// the gateway; a grain in a silo without it counts nothing.
/// </summary>
internal sealed class ConnectionGrainCounters
{
    private readonly ConcurrentDictionary<string, Counts> _byListener = new();
    private readonly ConcurrentDictionary<GrainId, AwayGrain> _awayFromSocket = new();

    /// <summary>This silo's connection grains whose socket is on another silo: the ones a graceful stop moves away.</summary>
    public IReadOnlyCollection<AwayGrain> GrainsAwayFromSocket => [.. _awayFromSocket.Values];

    /// <summary>A grain here serves a socket on <paramref name="gatewaySilo"/>.</summary>
    public void AwayFromSocket(GrainId grain, string gatewaySilo) => _awayFromSocket[grain] = new AwayGrain(grain, gatewaySilo);

    /// <summary>That grain no longer serves its connection here (it ended, or the grain is moving).</summary>
    public void NoLongerAway(GrainId grain)
    {
        if (_awayFromSocket.TryRemove(grain, out var away))
        {
            away.Left.TrySetResult();
        }
    }

    /// <summary>The counts of one listener (created at first use).</summary>
    public Counts For(string listener) => _byListener.GetOrAdd(listener, static _ => new Counts());

    /// <summary>A grain away from its socket; <see cref="Left"/> completes when it no longer serves the connection here.</summary>
    internal sealed record AwayGrain(GrainId Grain, string GatewaySilo)
    {
        public TaskCompletionSource Left { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    internal sealed class Counts
    {
        private long _connections;
        private long _gatewayWatches;
        private long _timers;
        private long _tasks;

        /// <summary>Grains that hold a live connection (from ConnectionMade to ConnectionLost or a hand-over).</summary>
        public long Connections => Interlocked.Read(ref _connections);

        /// <summary>Grains watching the membership of their socket's silo.</summary>
        public long GatewayWatches => Interlocked.Read(ref _gatewayWatches);

        /// <summary>Grain timers armed for <c>CallLater</c>/<c>CallAt</c>.</summary>
        public long Timers => Interlocked.Read(ref _timers);

        /// <summary>Tasks started with <c>CreateTask</c> that have not finished.</summary>
        public long Tasks => Interlocked.Read(ref _tasks);

        public void Connection(int delta) => Interlocked.Add(ref _connections, delta);

        public void GatewayWatch(int delta) => Interlocked.Add(ref _gatewayWatches, delta);

        public void Timer(int delta) => Interlocked.Add(ref _timers, delta);

        public void Task(int delta) => Interlocked.Add(ref _tasks, delta);
    }
}
