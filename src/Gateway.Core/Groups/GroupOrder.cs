namespace OrleansProtocol.Gateway.Groups;

/// <summary>
/// Puts the group messages of each sending silo back in the order that silo numbered them, before they are delivered.
/// A silo numbers its messages to each other silo 1, 2, 3, … and does not wait for one to arrive before sending the
/// next (Orleans keeps no order between calls in flight), so a message can arrive ahead of one sent before it: it waits
/// here until the earlier one comes.
/// </summary>
/// <remarks>
/// A number that has not come within the gap timeout was lost (its call failed at the sender, or the link between the
/// silos broke): <see cref="SkipGaps"/> gives it up and delivers what waited behind it; if it comes after all, it is
/// late and not delivered, so that no member sees the sender's messages out of order. Not thread-safe: the group
/// gateway's turns (an Orleans system target's, one at a time) serialize every call.
/// </remarks>
/// <typeparam name="TSource">Identifies a sending silo (a new incarnation is a new source, starting at 1 again).</typeparam>
/// <typeparam name="TMessage">A message waiting for its turn.</typeparam>
internal sealed class GroupOrder<TSource, TMessage>(Action<TMessage> deliver) where TSource : notnull
{
    private readonly Dictionary<TSource, Source> _sources = [];

    /// <summary>Messages waiting behind a missing one, over every source.</summary>
    public int Waiting { get; private set; }

    /// <summary>Sources with state here (each a sending silo seen and not forgotten).</summary>
    public int Sources => _sources.Count;

    /// <summary>
    /// Takes message number <paramref name="sequence"/> of <paramref name="source"/> at time <paramref name="now"/>
    /// (any monotonic clock): delivers it, and every message waiting right behind it, if it is the next; else holds it.
    /// Returns false if it is late (its number was given up, or delivered already), and then does not deliver it.
    /// </summary>
    public bool Arrive(TSource source, long sequence, TMessage message, long now)
    {
        if (!_sources.TryGetValue(source, out var state))
        {
            _sources[source] = state = new Source();
        }

        if (sequence < state.Next)
        {
            return false;
        }

        if (sequence > state.Next)
        {
            if (state.Waiting.TryAdd(sequence, (message, now)))
            {
                Waiting++;
                return true;
            }

            return false; // the same number twice: a duplicate
        }

        deliver(message);
        state.Next++;
        Release(state);
        return true;
    }

    /// <summary>
    /// Gives up every missing number that messages have waited behind for longer than <paramref name="gap"/> (in the
    /// clock's units), delivering what waited; returns how many numbers were given up.
    /// </summary>
    public long SkipGaps(long now, long gap)
    {
        long skipped = 0;
        foreach (var state in _sources.Values)
        {
            while (state.Waiting.Count > 0 && now - state.Waiting.Values[0].Since >= gap)
            {
                var first = state.Waiting.Keys[0];
                skipped += first - state.Next;
                state.Next = first;
                Release(state);
            }
        }

        return skipped;
    }

    /// <summary>Drops the state of sources that will never send again (dead silos); their waiting messages are delivered.</summary>
    public void Forget(Func<TSource, bool> gone)
    {
        foreach (var source in _sources.Keys.Where(gone).ToList())
        {
            var state = _sources[source];
            foreach (var (message, _) in state.Waiting.Values)
            {
                deliver(message);
            }

            Waiting -= state.Waiting.Count;
            _sources.Remove(source);
        }
    }

    private void Release(Source state)
    {
        while (state.Waiting.Count > 0 && state.Waiting.Keys[0] == state.Next)
        {
            var (message, _) = state.Waiting.Values[0];
            state.Waiting.RemoveAt(0);
            Waiting--;
            deliver(message);
            state.Next++;
        }
    }

    private sealed class Source
    {
        public long Next = 1;

        public readonly SortedList<long, (TMessage Message, long Since)> Waiting = [];
    }
}
