namespace OrleansProtocol;

/// <summary>
/// A named set of connections, cluster-wide, to send one message to all of them: a chat room, a pub/sub channel, the
/// subscribers of a topic. Get one with <c>ProtocolConnections.GetGroup</c>; usable from grains, silo code and external
/// Orleans clients.
/// </summary>
/// <remarks>
/// <para>
/// <b>Delivered by the gateways, not by the members' grains.</b> Each silo's gateway keeps its own sockets' memberships;
/// a send reaches each silo's gateway once, and the gateway writes the message to its local members' sockets itself. A
/// member's grain is not called, so a message reaches a member whose grain is busy, on another silo or not active.
/// </para>
/// <para>
/// <b>Guarantees.</b> Every member gets every message once, in the order each sender sent it, when the sender awaits
/// each <see cref="Send"/> or <see cref="Post"/> before the next (as with <see cref="IProtocolConnection.Send"/>): each
/// silo numbers what it sends each other silo, and the receiving gateway delivers in that order. A message is written whole,
/// between the member's own writes, never inside one. A member that falls behind — more than the listener's
/// <c>MaxGroupBacklog</c> of group messages waiting for its peer — is closed with
/// <see cref="ConnectionCloseReason.WriteBufferLimit"/> (<see cref="GroupOverflow.Close"/>, as Redis closes a pub/sub
/// client past its output limit), or has that message dropped and counted (<see cref="GroupOverflow.Drop"/>, as MQTT
/// brokers drop QoS 0 messages). A connection leaves its groups when it ends; a silo's failure takes its members with it;
/// a grain migration keeps them (the socket did not move).
/// </para>
/// <para>
/// <b>No call cycles.</b> Every method only records or enqueues at the gateways and never calls a grain, so a member's
/// callback, a room grain or a broker's router may await a group while the group's members are awaiting them.
/// </para>
/// </remarks>
[Alias("OrleansProtocol.IConnectionGroup")]
public interface IConnectionGroup : IGrainWithStringKey
{
    /// <summary>Adds a live connection; true if it is a member now, false if it has ended (or was never live).</summary>
    [Alias("Add")]
    Task<bool> Add(ConnectionInfo member);

    /// <summary>Adds the live connection with that id, asking every silo's gateway which holds it; as <see cref="Add"/>.</summary>
    [Alias("AddById")]
    Task<bool> AddById(string connectionId);

    /// <summary>Removes a member; true if it was one.</summary>
    [Alias("Remove")]
    Task<bool> Remove(string connectionId);

    /// <summary>
    /// Writes <paramref name="data"/> to every member but <paramref name="except"/>. Completes once the message is
    /// queued at every member's gateway (not once the peers read it); a member that fell behind is handled by
    /// <paramref name="overflow"/>.
    /// </summary>
    [Alias("Send")]
    Task<GroupSendResult> Send([Immutable] byte[] data, string? except = null, GroupOverflow overflow = GroupOverflow.Close);

    /// <summary>
    /// Writes <paramref name="frame"/> as one frame in each member's own framing (<c>Transport.WriteFrame</c>); a member
    /// whose listener is not framed, or whose framing cannot carry it, is skipped and counted as dropped.
    /// </summary>
    [Alias("SendFrame")]
    Task<GroupSendResult> SendFrame([Immutable] byte[] frame, string? except = null, GroupOverflow overflow = GroupOverflow.Close);

    /// <summary>
    /// As <see cref="Send"/>, without waiting for the other silos: completes once the message is queued for the members
    /// on the caller's silo and is on its way, numbered, to each other silo's gateway, which delivers it in the order
    /// this silo sent it. The result counts the caller's silo's members only (as <c>PUBLISH</c> does in a Redis
    /// Cluster). For a sender faster than one cross-silo round trip per message (a publisher, a busy room). Up to 256
    /// messages per silo are in flight; past that it waits (up to 5 s, then that silo's share is dropped and logged).
    /// </summary>
    [Alias("Post")]
    Task<GroupSendResult> Post([Immutable] byte[] data, string? except = null, GroupOverflow overflow = GroupOverflow.Close);

    /// <summary>As <see cref="SendFrame"/>, without waiting for the other silos (see <see cref="Post"/>).</summary>
    [Alias("PostFrame")]
    Task<GroupSendResult> PostFrame([Immutable] byte[] frame, string? except = null, GroupOverflow overflow = GroupOverflow.Close);

    /// <summary>Members now, across every silo.</summary>
    [Alias("Count")]
    Task<int> Count();

    /// <summary>The members' connection ids, across every silo.</summary>
    [Alias("List")]
    Task<string[]> List();
}

/// <summary>What a group does with a member whose peer has not taken its earlier group messages (<c>MaxGroupBacklog</c>).</summary>
public enum GroupOverflow
{
    /// <summary>Close the member's connection (<see cref="ConnectionCloseReason.WriteBufferLimit"/>): it missed nothing it was not told of.</summary>
    Close = 0,

    /// <summary>Drop this message for that member, count it, and keep the member.</summary>
    Drop = 1,
}

/// <summary>What one group send did.</summary>
/// <param name="Delivered">Members the message was queued for.</param>
/// <param name="Dropped">Members it was dropped for (behind, with <see cref="GroupOverflow.Drop"/>; or a frame their framing cannot carry).</param>
/// <param name="Closed">Members closed for falling behind (<see cref="GroupOverflow.Close"/>).</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.GroupSendResult")]
public readonly record struct GroupSendResult(
    [property: Id(0)] int Delivered,
    [property: Id(1)] int Dropped,
    [property: Id(2)] int Closed)
{
    /// <summary>The two results summed (the answers of several gateways).</summary>
    public static GroupSendResult operator +(GroupSendResult a, GroupSendResult b) =>
        new(a.Delivered + b.Delivered, a.Dropped + b.Dropped, a.Closed + b.Closed);
}

/// <summary>
/// Every group with members, cluster-wide, and how many: asks each active silo's gateway and sums. A stateless worker;
/// use <c>ProtocolConnections.ListGroupsAsync</c>.
/// </summary>
[Alias("OrleansProtocol.IConnectionGroupDirectory")]
public interface IConnectionGroupDirectory : IGrainWithIntegerKey
{
    /// <summary>Each group's name and its members across every silo.</summary>
    [Alias("List")]
    Task<Dictionary<string, int>> List();
}
