using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Puts one connection's batches back in the order its grain sealed them. Callback replies and observer pushes take
/// different paths (a reply can overtake a push across silos), so a batch may arrive before the one it follows: it is
/// held until its turn. A batch already applied, or one from a protocol that has since handed the connection over
/// (an older epoch, <c>SetProtocol</c>), is dropped.
/// </summary>
/// <remarks>Not thread-safe: the connection's lock guards it.</remarks>
internal sealed class BatchSequencer
{
    private SortedDictionary<long, TransportBatch>? _early;

    /// <summary>The current protocol's number: 0 for the first, one more at each hand-over.</summary>
    public int Epoch { get; private set; }

    /// <summary>The sequence number of the last batch applied in this epoch (batches are numbered from 1).</summary>
    public long Applied { get; private set; }

    /// <summary>Batches that arrived ahead of their turn and wait for the ones before them.</summary>
    public int Held => _early?.Count ?? 0;

    /// <summary>
    /// The connection goes to another protocol: its numbering starts again at 1, and whatever the previous one still
    /// has on its way (or held here) is dropped.
    /// </summary>
    public void NextEpoch()
    {
        Epoch++;
        Applied = 0;
        _early = null;
    }

    /// <summary>
    /// Offers a batch from the protocol of <paramref name="epoch"/>. If it is next in sequence, <paramref name="apply"/>
    /// runs for it and then for every held batch that follows without a gap, while it returns true (false stops: the
    /// batch handed the connection over, say, and what follows belongs to the old protocol).
    /// </summary>
    /// <returns>True if <paramref name="apply"/> ran; false if the batch was stale (dropped) or early (held).</returns>
    public bool Offer<TState>(TransportBatch batch, int epoch, TState state, Func<TState, TransportBatch, bool> apply)
    {
        if (epoch != Epoch || batch.Sequence <= Applied)
        {
            return false;
        }

        if (batch.Sequence != Applied + 1)
        {
            (_early ??= []).TryAdd(batch.Sequence, batch);
            return false;
        }

        Applied = batch.Sequence;
        var proceed = apply(state, batch);
        while (proceed && _early is { Count: > 0 } && _early.Remove(Applied + 1, out var next))
        {
            Applied = next.Sequence;
            proceed = apply(state, next);
        }

        return true;
    }
}
