using Orleans.Concurrency;
using Orleans.Runtime.Services;
using Orleans.Services;

namespace OrleansProtocol.Wire;

/// <summary>Reaches one silo's <see cref="IConnectionRegistry"/>.</summary>
public interface IConnectionRegistryClient : IGrainServiceClient<IConnectionRegistry>
{
    /// <summary>The registry of <paramref name="silo"/>'s gateway.</summary>
    IConnectionRegistry On(SiloAddress silo);
}

/// <summary>The Orleans grain-service client for <see cref="IConnectionRegistry"/>.</summary>
public sealed class ConnectionRegistryClient(IServiceProvider services) : GrainServiceClient<IConnectionRegistry>(services), IConnectionRegistryClient
{
    /// <inheritdoc />
    public IConnectionRegistry On(SiloAddress silo) => GetGrainService(silo);
}

/// <summary>
/// A listener's live connections, cluster-wide: asks every active silo's gateway (<see cref="IConnectionRegistry"/>)
/// and merges. Costs nothing per connection — opening or closing one makes no call here — and is exact after a silo
/// failure, since nothing is kept: a dead silo's connections are gone with it.
/// </summary>
[StatelessWorker]
public sealed class ConnectionDirectoryGrain(IConnectionRegistryClient registries, IClusterMembershipService membership) : Grain, IConnectionDirectory
{
    /// <inheritdoc />
    public async Task<ConnectionInfo[]> List()
    {
        var listener = this.GetPrimaryKeyString();
        var answers = await Task.WhenAll(ActiveSilos().Select(silo => Ask(silo, r => r.List(listener), [])));
        return [.. answers.SelectMany(a => a)];
    }

    /// <inheritdoc />
    public async Task<ConnectionStatus[]> ListStatus()
    {
        var listener = this.GetPrimaryKeyString();
        var answers = await Task.WhenAll(ActiveSilos().Select(silo => Ask(silo, r => r.ListStatus(listener), [])));
        return [.. answers.SelectMany(a => a)];
    }

    /// <inheritdoc />
    public async Task<ConnectionInfo?> Find(string connectionId)
    {
        var answers = await Task.WhenAll(ActiveSilos().Select(silo => Ask(silo, r => r.Find(connectionId), null)));
        return answers.FirstOrDefault(a => a is not null);
    }

    private Task<T> Ask<T>(SiloAddress silo, Func<IConnectionRegistry, Task<T>> ask, T none) =>
        membership.AskAsync(silo, registries.On(silo), ask, none);

    private IEnumerable<SiloAddress> ActiveSilos() => membership.ActiveSilos();
}
