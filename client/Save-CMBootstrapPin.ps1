<#
.SYNOPSIS
    First setup: fetch the service's bundle-signing keys and pin them. Never part of the install.

.DESCRIPTION
    Windows PowerShell 5.1, .NET Framework 4.6+ only. Fetches <api>/jwks/signed WITHOUT any
    prior trust, checks that it is consistent (signed by a key it lists, each kid the key's RFC
    7638 thumbprint, not expired), writes the pinned key set to -OutFile and prints each key's
    thumbprint. Compare them out of band before you ship the file with your deployment (Intune
    Win32 app, GPO, task sequence package): with the kid of /api/jwks fetched over another
    network, or the kid column of the BundleIssuance table. From then on Invoke-CMBootstrap.ps1
    follows key rotations only through sets signed by a pinned key.

.EXAMPLE
    .\Save-CMBootstrapPin.ps1 -ApiBaseUrl https://contoso-cmboot.azurewebsites.net/api `
        -OutFile .\pinned-jwks.json
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $ApiBaseUrl,
    [Parameter(Mandatory = $true)] [string] $OutFile
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
. (Join-Path $PSScriptRoot 'CMBootstrap.Device.ps1')

$ApiBaseUrl = $ApiBaseUrl.TrimEnd('/')
$jws = Invoke-BootstrapRequest 'GET' "$ApiBaseUrl/jwks/signed" @{} $null 'application/jose'
$parts = $jws.Trim().Split('.')
if ($parts.Count -ne 3) { throw 'Key set refused: not a compact JWS.' }
# No trust yet: the set may only be signed by a key it lists itself (consistency, not trust).
$signed = Read-SignedJwks $jws (Get-JwkMap (ConvertFrom-JsonBase64Url $parts[1]))
$OutFile = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($OutFile)
Save-PinnedJwks $OutFile $signed.Jwks $signed.IssuedAt
Write-Output "pinned $(@($signed.Jwks).Count) key(s) into $OutFile; compare each RFC 7638 thumbprint"
Write-Output 'out of band (the kid of /api/jwks from another network, or BundleIssuance.kid):'
foreach ($jwk in $signed.Jwks) {
    $thumbprint = Get-JwkThumbprint $jwk
    $role = 'published'
    if ($thumbprint -ceq $signed.Signer) { $role = 'current (signs)' }
    Write-Output "  $thumbprint  $role"
}
