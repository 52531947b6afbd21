using System.Buffers;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Small writes waiting behind each other in a writer's queue (a group's messages to a busy member, replies the
/// protocol pushed between sends), joined into one pooled buffer for one send instead of a send each.
/// </summary>
internal static class GatheredSend
{
    /// <summary>The most bytes one send gathers.</summary>
    public const int Limit = 16 * 1024;

    /// <summary>
    /// With <paramref name="first"/> just dequeued: when more small data items wait right behind it, dequeues them too
    /// and copies all into one buffer rented from the shared pool (the sender returns it); null when there is nothing
    /// to join. Called under the writer's lock.
    /// </summary>
    /// <returns>The buffer, and how many of its bytes are the protocol's and how many group messages'.</returns>
    public static (byte[] Buffer, int Protocol, int Group)? Take(OutboundItem first, Queue<OutboundItem> queue)
    {
        if (!IsData(first) || first.Data.Length >= Limit / 2 || !queue.TryPeek(out var next) || !Fits(next, first.Data.Length))
        {
            return null;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(Limit);
        var (protocol, group) = (0, 0);
        for (var item = first; ; queue.Dequeue())
        {
            item.Data.Span.CopyTo(buffer.AsSpan(protocol + group));
            if (item.Kind == OutboundKind.GroupData)
            {
                group += item.Data.Length;
            }
            else
            {
                protocol += item.Data.Length;
            }

            if (!queue.TryPeek(out item) || !Fits(item, protocol + group))
            {
                return (buffer, protocol, group);
            }
        }
    }

    private static bool IsData(OutboundItem item) => item.Kind is OutboundKind.Data or OutboundKind.GroupData;

    private static bool Fits(OutboundItem item, int gathered) => IsData(item) && gathered + item.Data.Length <= Limit;
}
