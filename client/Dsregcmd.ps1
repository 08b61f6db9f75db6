# Parse `dsregcmd /status` into a hashtable: the status report's fields plus every key and value.
# Windows PowerShell 5.1. Mirrors client/dsregcmd.py (keep the two in step). Dot-source it:
#     . "$PSScriptRoot\Dsregcmd.ps1"
#     $status = Get-DsregcmdStatus            # runs dsregcmd.exe /status
#     $status = Get-DsregcmdStatus -Text (Get-Content .\dsreg.txt)
# Result keys: AzureAdJoined, DomainJoined (booleans), TenantId, DeviceId, Hostname (string or
# $null), Values (hashtable of every "Key : Value"; a key repeated in a later section is stored
# as "Section/Key"). Read them with the indexer, $status['Values']: $status.Values is the
# Hashtable's own collection of values.

Set-StrictMode -Version 2.0

function ConvertTo-DsregcmdGuid {
    param([string] $Value)
    if ([string]::IsNullOrWhiteSpace($Value)) { return $null }
    $guid = [guid]::Empty
    if ([guid]::TryParse($Value.Trim('{', '}'), [ref] $guid)) { return $guid.ToString() }
    return $null
}

function Get-DsregcmdStatus {
    [CmdletBinding()]
    param(
        # Lines of `dsregcmd /status` output; when omitted, dsregcmd.exe is run.
        [string[]] $Text
    )
    if (-not $PSBoundParameters.ContainsKey('Text')) {
        $Text = & "$env:SystemRoot\System32\dsregcmd.exe" /status
        if ($LASTEXITCODE -ne 0) { throw "dsregcmd /status failed with exit code $LASTEXITCODE" }
    }
    $rule = '^\s*\+-+\+\s*$'
    $banner = '^\s*\|\s*(?<title>.*?)\s*\|?\s*$'
    $keyValue = '^\s*(?<key>[^:|+]+?)\s+:(?:\s+(?<value>.*?))?\s*$'
    $values = @{}
    $section = ''
    $previousWasRule = $false
    foreach ($line in ($Text -join "`n") -split "\r?\n") {
        if ($line -match $rule) { $previousWasRule = $true; continue }
        if ($previousWasRule -and $line -match $banner) {
            $previousWasRule = $false
            $section = $Matches['title']
            continue
        }
        $previousWasRule = $false
        if ($line -notmatch $keyValue) { continue }
        $key = $Matches['key'].Trim()
        $value = ''
        if ($Matches.ContainsKey('value') -and $null -ne $Matches['value']) {
            $value = $Matches['value'].Trim()
        }
        if ($values.ContainsKey($key)) { $key = "$section/$key" }
        $values[$key] = $value
    }
    $hostname = $null
    if ($values.ContainsKey('Device Name') -and $values['Device Name']) {
        $hostname = $values['Device Name']
    }
    return @{
        AzureAdJoined = ($values['AzureAdJoined'] -eq 'YES')
        DomainJoined  = ($values['DomainJoined'] -eq 'YES')
        TenantId      = ConvertTo-DsregcmdGuid $values['TenantId']
        DeviceId      = ConvertTo-DsregcmdGuid $values['DeviceId']
        Hostname      = $hostname
        Values        = $values
    }
}
