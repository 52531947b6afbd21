namespace OrleansProtocol.Samples;

/// <summary>A chat room: its members' connections, and the broadcast.</summary>
[Alias("OrleansProtocol.Samples.IChatRoomGrain")]
public interface IChatRoomGrain : IGrainWithStringKey
{
    /// <summary>Adds a member; returns how many others are in the room.</summary>
    [Alias("Join")]
    Task<int> Join(ConnectionInfo member, string nick);

    /// <summary>Removes a member.</summary>
    [Alias("Leave")]
    Task Leave(string connectionId, string nick);

    /// <summary>
    /// Queues <c>&lt;nick&gt; text</c> for every member but the speaker (at their gateways) and returns: the speaker never
    /// waits for, or fails with, another member. A speaker the room does not know (the room was reactivated after its
    /// silo failed) is greeted as a member again.
    /// </summary>
    [Alias("Say")]
    Task Say(ConnectionInfo speaker, string nick, string text);

    /// <summary>Queues <c>* text</c> for every member (an announcement from outside the room); returns how many it was queued for.</summary>
    [Alias("Announce")]
    Task<int> Announce(string text);
}
