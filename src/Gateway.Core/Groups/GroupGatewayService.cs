using System.Diagnostics;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Groups;

/// <summary>
/// This silo's gateway, for the groups of its own connections: the per-silo half of <see cref="IConnectionGroup"/>. An
/// Orleans grain service, so every silo has one at a known address. Only records and enqueues; never calls a grain.
/// </summary>
/// <remarks>
/// Messages are delivered in each sending silo's numbering (<see cref="GroupOrder{TSource, TMessage}"/>). A system
/// target runs one turn at a time and every method here is synchronous, so the order needs no lock.
/// </remarks>
internal sealed class GroupGatewayService : GrainService, IGroupGateway
{
    /// <summary>How long messages wait behind a missing number before it is given up.</summary>
    internal static readonly TimeSpan GapTimeout = TimeSpan.FromSeconds(2);

    private readonly ProtocolGateway _gateway;
    private readonly IClusterMembershipService _membership;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger _logger;
    private readonly GroupOrder<SiloAddress, Pending> _order;
    private IGrainTimer? _gapTimer;

    public GroupGatewayService(GrainId id, Silo silo, ILoggerFactory loggerFactory, ProtocolGateway gateway, IClusterMembershipService membership, GatewayMetrics metrics)
        : base(id, silo, loggerFactory)
    {
        _gateway = gateway;
        _membership = membership;
        _metrics = metrics;
        _logger = loggerFactory.CreateLogger<GroupGatewayService>();
        _order = new GroupOrder<SiloAddress, Pending>(pending => pending.Deliver(gateway.Groups));
    }

    public override Task Start()
    {
        var period = GapTimeout / 4;
        _gapTimer = RegisterTimer(_ => SkipGaps(), null, period, period);
        return base.Start();
    }

    public override Task Stop()
    {
        _gapTimer?.Dispose();
        return base.Stop();
    }

    public Task<bool> Join(string group, string connectionId) =>
        Task.FromResult(_gateway.FindConnection(connectionId) is { } connection
            && connection.Made.IsCompletedSuccessfully && connection.Made.Result
            && _gateway.Groups.Join(group, connection));

    public Task<bool> Leave(string group, string connectionId) => Task.FromResult(_gateway.Groups.Leave(group, connectionId));

    public Task<GroupSendResult> Deliver(SiloAddress source, long sequence, string group, byte[] data, bool frame, string? except, GroupOverflow overflow)
    {
        var pending = new Pending(group, data, frame, except, overflow);
        if (!_order.Arrive(source, sequence, pending, Stopwatch.GetTimestamp()))
        {
            _metrics.GroupMessages("late", 1);
            GatewayLog.GroupMessageLate(_logger, group, source.ToString(), sequence);
            return Task.FromResult(default(GroupSendResult));
        }

        return pending.Answer();
    }

    public Task<string[]> Members(string group) => Task.FromResult(_gateway.Groups.Members(group));

    public Task<Dictionary<string, int>> Groups() => Task.FromResult(_gateway.Groups.Groups());

    private Task SkipGaps()
    {
        if (_order.Waiting > 0)
        {
            var skipped = _order.SkipGaps(Stopwatch.GetTimestamp(), (long)(GapTimeout.TotalSeconds * Stopwatch.Frequency));
            if (skipped > 0)
            {
                _metrics.GroupMessages("lost", (int)Math.Min(skipped, int.MaxValue));
                GatewayLog.GroupMessagesLost(_logger, skipped, GapTimeout);
            }
        }

        // A silo that died sends no more: its numbering is forgotten (a restarted one is a new address, from 1).
        if (_order.Sources > 0)
        {
            var snapshot = _membership.CurrentSnapshot;
            _order.Forget(s => snapshot.GetSiloStatus(s) == SiloStatus.Dead);
        }

        return Task.CompletedTask;
    }

    /// <summary>A message in its sender's order: delivered at once when it is next, else when its turn comes.</summary>
    private sealed class Pending(string group, byte[] data, bool frame, string? except, GroupOverflow overflow)
    {
        private GroupSendResult? _result;
        private TaskCompletionSource<GroupSendResult>? _waiting;

        public void Deliver(ConnectionGroups groups)
        {
            var result = groups.Deliver(group, data, frame, except, overflow);
            _result = result;
            _waiting?.SetResult(result);
        }

        /// <summary>The answer to the sender: now if delivered, else when it is (both in the service's turns).</summary>
        public Task<GroupSendResult> Answer() =>
            _result is { } result ? Task.FromResult(result) : (_waiting = new TaskCompletionSource<GroupSendResult>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }
}
