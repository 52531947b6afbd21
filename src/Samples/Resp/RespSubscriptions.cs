using System.Buffers;
using System.Text;

namespace OrleansProtocol.Samples.Resp;

/// <summary>
/// Pub/sub for one RESP connection: its subscribed channels and the replies they take. A channel is a connection group
/// (<see cref="IConnectionGroup"/>, <c>resp:channel:NAME</c>), delivered by the subscribers' gateways.
/// </summary>
/// <param name="transport">The connection's transport: joins and leaves ride its batches, ordered with its writes.</param>
/// <param name="write">Writes one reply to the connection.</param>
internal sealed class RespSubscriptions(Func<ProtocolTransport> transport, Action<Action<IBufferWriter<byte>>> write)
{
    private readonly List<string> _channels = [];

    /// <summary>Channels subscribed to.</summary>
    public int Count => _channels.Count;

    /// <summary>The channels subscribed to, in order (a hibernating connection keeps them).</summary>
    public string[] Channels => [.. _channels];

    /// <summary>Takes back the channels of a woken connection: its memberships stayed with the gateway.</summary>
    public void Restore(IEnumerable<string> channels) => _channels.AddRange(channels);

    /// <summary>
    /// PUBLISH: the message, encoded once for every subscriber (*3 $7 message $n channel $m payload). Posted, not sent
    /// (<see cref="IConnectionGroup.Post"/>): a publisher is not paced by a round trip to every silo, and each silo's
    /// subscribers still get its messages in order. Returns the receivers on this silo, as PUBLISH in a Redis Cluster
    /// counts those of its node only.
    /// </summary>
    public static async Task<int> PublishAsync(IGrainFactory grains, string channel, byte[] message)
    {
        var push = RespReply.Encode(output =>
        {
            RespReply.ArrayHeader(output, 3);
            RespReply.Bulk(output, "message"u8);
            RespReply.Bulk(output, RespCommand.KeyBytes(channel));
            RespReply.Bulk(output, message);
        });
        return (await grains.GetGroup(Group(channel)).Post(push)).Delivered;
    }

    /// <summary>SUBSCRIBE: each channel confirmed, then joined — a message published after cannot overtake the confirmation.</summary>
    public void Subscribe(IEnumerable<string> channels)
    {
        foreach (var channel in channels)
        {
            if (!_channels.Contains(channel))
            {
                _channels.Add(channel);
            }

            write(o => Confirmation(o, "subscribe", RespCommand.KeyBytes(channel), _channels.Count));
            transport().JoinGroup(Group(channel));
        }
    }

    /// <summary>
    /// UNSUBSCRIBE (every channel when none is named): each left before its confirmation, so no message of it comes
    /// after. RESET leaves them without a word (<paramref name="reply"/> false).
    /// </summary>
    public void Unsubscribe(string[] channels, bool reply = true)
    {
        if (channels.Length == 0)
        {
            channels = [.. _channels];
            if (channels.Length == 0 && reply)
            {
                write(o => Confirmation(o, "unsubscribe", null, 0));
            }
        }

        foreach (var channel in channels)
        {
            _channels.Remove(channel);
            transport().LeaveGroup(Group(channel));
            if (reply)
            {
                write(o => Confirmation(o, "unsubscribe", RespCommand.KeyBytes(channel), _channels.Count));
            }
        }
    }

    /// <summary>The connection ended: the gateway took it out of its channels' groups.</summary>
    public void Clear() => _channels.Clear();

    private static string Group(string channel) => $"resp:channel:{channel}";

    private static void Confirmation(IBufferWriter<byte> o, string kind, byte[]? channel, int count)
    {
        RespReply.ArrayHeader(o, 3);
        RespReply.Bulk(o, Encoding.ASCII.GetBytes(kind));
        RespReply.Bulk(o, channel);
        RespReply.Integer(o, count);
    }
}
