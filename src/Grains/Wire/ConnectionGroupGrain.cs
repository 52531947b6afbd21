using Orleans.Concurrency;
using Orleans.Runtime.Services;
using Orleans.Services;

namespace OrleansProtocol.Wire;

/// <summary>Reaches one silo's <see cref="IGroupGateway"/>.</summary>
public interface IGroupGatewayClient : IGrainServiceClient<IGroupGateway>
{
    /// <summary>The group gateway of <paramref name="silo"/>.</summary>
    IGroupGateway On(SiloAddress silo);
}

/// <summary>The Orleans grain-service client for <see cref="IGroupGateway"/>.</summary>
public sealed class GroupGatewayClient(IServiceProvider services) : GrainServiceClient<IGroupGateway>(services), IGroupGatewayClient
{
    /// <inheritdoc />
    public IGroupGateway On(SiloAddress silo) => GetGrainService(silo);
}

/// <summary>
/// A group, cluster-wide: holds nothing itself. Memberships live in the gateways that hold the members' sockets (so
/// they end with the socket, survive this grain and its silo, and cost no call when a connection closes); a send goes
/// once to each active silo's gateway, numbered in this silo's lane to it (<see cref="GroupLanes"/>), and that gateway
/// writes to its own members in number order. A stateless worker, activated next to its caller, so a send costs one
/// local hop and one message per silo.
/// </summary>
[StatelessWorker]
public sealed class ConnectionGroupGrain(IGroupGatewayClient gateways, GroupLanes lanes, IClusterMembershipService membership) : Grain, IConnectionGroup
{
    /// <inheritdoc />
    public async Task<bool> Add(ConnectionInfo member)
    {
        ArgumentNullException.ThrowIfNull(member);
        if (member.GatewaySilo is not { } silo)
        {
            return await AddById(member.ConnectionId);
        }

        var address = SiloAddress.FromParsableString(silo);
        return await Ask(address, g => g.Join(Name, member.ConnectionId), false);
    }

    /// <inheritdoc />
    public async Task<bool> AddById(string connectionId)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionId);
        var answers = await Task.WhenAll(ActiveSilos().Select(s => Ask(s, g => g.Join(Name, connectionId), false)));
        return answers.Any(joined => joined);
    }

    /// <inheritdoc />
    public async Task<bool> Remove(string connectionId)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionId);
        var answers = await Task.WhenAll(ActiveSilos().Select(s => Ask(s, g => g.Leave(Name, connectionId), false)));
        return answers.Any(left => left);
    }

    /// <inheritdoc />
    public Task<GroupSendResult> Send(byte[] data, string? except = null, GroupOverflow overflow = GroupOverflow.Close)
    {
        ArgumentNullException.ThrowIfNull(data);
        return Deliver(data, frame: false, except, overflow, everySilo: true);
    }

    /// <inheritdoc />
    public Task<GroupSendResult> SendFrame(byte[] frame, string? except = null, GroupOverflow overflow = GroupOverflow.Close)
    {
        ArgumentNullException.ThrowIfNull(frame);
        return Deliver(frame, frame: true, except, overflow, everySilo: true);
    }

    /// <inheritdoc />
    public Task<GroupSendResult> Post(byte[] data, string? except = null, GroupOverflow overflow = GroupOverflow.Close)
    {
        ArgumentNullException.ThrowIfNull(data);
        return Deliver(data, frame: false, except, overflow, everySilo: false);
    }

    /// <inheritdoc />
    public Task<GroupSendResult> PostFrame(byte[] frame, string? except = null, GroupOverflow overflow = GroupOverflow.Close)
    {
        ArgumentNullException.ThrowIfNull(frame);
        return Deliver(frame, frame: true, except, overflow, everySilo: false);
    }

    /// <inheritdoc />
    public async Task<int> Count() => (await List()).Length;

    /// <inheritdoc />
    public async Task<string[]> List()
    {
        var answers = await Task.WhenAll(ActiveSilos().Select(s => Ask(s, g => g.Members(Name), [])));
        return [.. answers.SelectMany(a => a)];
    }

    private string Name => this.GetPrimaryKeyString();

    /// <summary>
    /// Sends the message down every active silo's lane, then waits for every silo's answer (<paramref name="everySilo"/>)
    /// or only this silo's; the others' are on their way, in order.
    /// </summary>
    private async Task<GroupSendResult> Deliver(byte[] data, bool frame, string? except, GroupOverflow overflow, bool everySilo)
    {
        var name = Name;
        var local = lanes.Local;
        GroupSendResult result = default;
        List<Task<GroupSendResult>>? others = null;
        Task<GroupSendResult>? here = null;
        foreach (var silo in ActiveSilos())
        {
            if (await lanes.SendAsync(silo, name, data, frame, except, overflow) is not { } answer)
            {
                continue;
            }

            if (silo.Equals(local))
            {
                here = answer;
            }
            else if (everySilo)
            {
                (others ??= []).Add(answer);
            }
        }

        if (here is not null)
        {
            result += await Answered(here);
        }

        foreach (var answer in others ?? [])
        {
            result += await Answered(answer);
        }

        return result;
    }

    /// <summary>
    /// One silo's share of a send. A silo that cannot be reached is dying or cut off (its members end with it, or after
    /// the cut is detected): the send goes on to the others rather than failing for all of them.
    /// </summary>
    private static async Task<GroupSendResult> Answered(Task<GroupSendResult> answer)
    {
        try
        {
            return await answer;
        }
        catch (Exception ex) when (ex is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException)
        {
            return default;
        }
    }

    private Task<T> Ask<T>(SiloAddress silo, Func<IGroupGateway, Task<T>> ask, T none) =>
        membership.AskAsync(silo, gateways.On(silo), ask, none);

    private IEnumerable<SiloAddress> ActiveSilos() => membership.ActiveSilos();
}

/// <summary>Every group with members, cluster-wide: each active silo's gateway says its own, and the counts are summed.</summary>
[StatelessWorker]
public sealed class ConnectionGroupDirectoryGrain(IGroupGatewayClient gateways, IClusterMembershipService membership) : Grain, IConnectionGroupDirectory
{
    /// <inheritdoc />
    public async Task<Dictionary<string, int>> List()
    {
        var answers = await Task.WhenAll(membership.ActiveSilos().Select(silo => membership.AskAsync(silo, gateways.On(silo), g => g.Groups(), [])));
        return answers.SelectMany(a => a).GroupBy(g => g.Key).ToDictionary(g => g.Key, g => g.Sum(e => e.Value));
    }
}
