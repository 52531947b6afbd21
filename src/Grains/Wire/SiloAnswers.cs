namespace OrleansProtocol.Wire;

/// <summary>Asking every active silo's gateway (a grain service per silo), as the directory and group grains do.</summary>
internal static class SiloAnswers
{
    /// <summary>The silos active in the current membership snapshot.</summary>
    public static IEnumerable<SiloAddress> ActiveSilos(this IClusterMembershipService membership) =>
        membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress);

    /// <summary>
    /// Asks one silo's <paramref name="service"/>. A silo that died since the membership snapshot holds nothing any
    /// more: it answers <paramref name="none"/>. Any other failure is the caller's to see, rather than a silently
    /// partial answer.
    /// </summary>
    public static async Task<T> AskAsync<TService, T>(this IClusterMembershipService membership, SiloAddress silo, TService service, Func<TService, Task<T>> ask, T none)
    {
        try
        {
            return await ask(service);
        }
        catch (Exception ex) when (ex is SiloUnavailableException or OrleansMessageRejectionException && membership.CurrentSnapshot.GetSiloStatus(silo) != SiloStatus.Active)
        {
            return none;
        }
    }
}
