using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Wire;

/// <summary>
/// This silo's numbered lanes to every silo's group gateway (its own included): each group message this silo sends a
/// silo gets the next number of that silo's lane, and the receiving gateway delivers in number order. So a sender need
/// not wait for one message to arrive before sending the next, and its order still holds (Orleans keeps none between
/// calls in flight). One per silo (a singleton), shared by every activation of the group grain.
/// </summary>
/// <remarks>
/// Each lane holds at most <see cref="Window"/> messages in flight: past that a send waits for the gateway's answers,
/// for up to <see cref="WindowWait"/>, then gives up that silo's share of the message (logged) — a silo that has taken
/// nothing for so long is cut off or dying, and a sender is not held for it.
/// </remarks>
public sealed class GroupLanes(IGroupGatewayClient gateways, ILocalSiloDetails localSilo, IClusterMembershipService membership, ILogger<GroupLanes> logger)
{
    /// <summary>Messages in flight to one silo, at most.</summary>
    public const int Window = 256;

    /// <summary>How long a send waits for room in a full lane before giving up that silo's share.</summary>
    public static readonly TimeSpan WindowWait = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<SiloAddress, Lane> _lanes = new();

    /// <summary>This silo.</summary>
    public SiloAddress Local => localSilo.SiloAddress;

    /// <summary>
    /// Sends one group message to <paramref name="silo"/>'s gateway, numbered; returns the gateway's answer (not to be
    /// awaited for order's sake), or null if the lane stayed full for <see cref="WindowWait"/>.
    /// </summary>
    public async ValueTask<Task<GroupSendResult>?> SendAsync(SiloAddress silo, string group, byte[] data, bool frame, string? except, GroupOverflow overflow)
    {
        if (!_lanes.TryGetValue(silo, out var lane))
        {
            lane = _lanes.GetOrAdd(silo, static _ => new Lane());
            ForgetDead();
        }

        if (!await lane.Room.WaitAsync(WindowWait))
        {
            GroupLog.LaneFull(logger, silo.ToString(), group, Window, WindowWait);
            return null;
        }

        Task<GroupSendResult> answer;
        try
        {
            // Numbered and handed to Orleans together, so that numbers leave nearly in order and rarely wait.
            lock (lane)
            {
                answer = gateways.On(silo).Deliver(Local, ++lane.Sequence, group, data, frame, except, overflow);
            }
        }
        catch
        {
            lane.Room.Release();
            throw;
        }

        _ = answer.ContinueWith(static (t, state) =>
        {
            var (lane, silo, logger) = ((Lane, SiloAddress, ILogger))state!;
            lane.Room.Release();
            if (t.Exception?.GetBaseException() is { } error && error is not (SiloUnavailableException or OrleansMessageRejectionException))
            {
                GroupLog.DeliverFailed(logger, silo.ToString(), error);
            }
        }, (lane, silo, (ILogger)logger), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return answer;
    }

    private void ForgetDead()
    {
        var snapshot = membership.CurrentSnapshot;
        foreach (var silo in _lanes.Keys)
        {
            if (snapshot.GetSiloStatus(silo) == SiloStatus.Dead)
            {
                _lanes.TryRemove(silo, out _);
            }
        }
    }

    private sealed class Lane
    {
        public readonly SemaphoreSlim Room = new(Window, Window);

        public long Sequence;
    }
}

internal static partial class GroupLog
{
    [LoggerMessage(1, LogLevel.Warning, "Group messages to silo {Silo} have not been taken for {Wait} ({Window} in flight): this message's share for that silo's members of group '{Group}' is dropped", EventName = "GroupLaneFull")]
    public static partial void LaneFull(ILogger logger, string silo, string group, int window, TimeSpan wait);

    [LoggerMessage(2, LogLevel.Warning, "A group message to silo {Silo} failed", EventName = "GroupDeliverFailed")]
    public static partial void DeliverFailed(ILogger logger, string silo, Exception error);
}
