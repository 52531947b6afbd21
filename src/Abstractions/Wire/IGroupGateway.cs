using Orleans.Concurrency;

namespace OrleansProtocol.Wire;

/// <summary>
/// One silo's gateway, for the groups its own connections are in (an Orleans grain service, one per silo): the
/// per-silo half of <see cref="IConnectionGroup"/>. The wire contract; protocol code does not call it.
/// </summary>
/// <remarks>Every method only records or enqueues and never calls a grain, so none can be part of a call cycle.</remarks>
[Alias("OrleansProtocol.IGroupGateway")]
public interface IGroupGateway : Orleans.Services.IGrainService
{
    /// <summary>Adds this silo's live connection to <paramref name="group"/>; false if it is not live here.</summary>
    [AlwaysInterleave]
    [Alias("Join")]
    Task<bool> Join(string group, string connectionId);

    /// <summary>Removes this silo's connection from <paramref name="group"/>; true if it was a member.</summary>
    [AlwaysInterleave]
    [Alias("Leave")]
    Task<bool> Leave(string group, string connectionId);

    /// <summary>
    /// Queues <paramref name="data"/> (a frame to encode per member when <paramref name="frame"/>) for this silo's
    /// members, in the order of <paramref name="sequence"/>: the number <paramref name="source"/> gave this message
    /// among all it sends this silo, from 1. Completes when the message is queued; one that arrives ahead of an earlier
    /// number waits for it (up to the gap timeout).
    /// </summary>
    [AlwaysInterleave]
    [Alias("Deliver")]
    Task<GroupSendResult> Deliver(SiloAddress source, long sequence, string group, [Immutable] byte[] data, bool frame, string? except, GroupOverflow overflow);

    /// <summary>This silo's members of <paramref name="group"/>.</summary>
    [AlwaysInterleave]
    [Alias("Members")]
    Task<string[]> Members(string group);

    /// <summary>This silo's groups and how many of its connections each has.</summary>
    [AlwaysInterleave]
    [Alias("Groups")]
    Task<Dictionary<string, int>> Groups();
}
